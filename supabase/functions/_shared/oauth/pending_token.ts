// The token that names a pending connection: 32 random bytes (base64url, 43 characters) handed to the
// doctor's browser once, in a URL fragment. Only its SHA-256 is stored, so the database never holds a
// token that could finish a connection.
import { randomBase64Url, sha256Hex } from "../crypto/digest.ts";

export const PENDING_TOKEN = /^[A-Za-z0-9_-]{43}$/;

export async function newPendingToken(): Promise<{ token: string; tokenHash: string }> {
  const token = randomBase64Url(32);
  return { token, tokenHash: await pendingTokenHash(token) };
}

export function pendingTokenHash(token: string): Promise<string> {
  return sha256Hex(token);
}

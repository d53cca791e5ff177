// PKCE (RFC 7636, S256) for Meta's code exchange: a code is only redeemed with the verifier of the
// flow that asked for it, so a code taken from one browser cannot be replayed through another flow's
// state (code injection). The verifier is HMAC(pkce key, the state's nonce): derived again at the
// callback from the signed state, it is never stored, and it never leaves the server (the dialog URL
// carries only its challenge). 32 bytes of HMAC give 43 base64url characters, RFC 7636's minimum.
import { encodeBase64Url } from "../crypto/base64url.ts";
import { sha256Base64Url } from "../crypto/digest.ts";

export const PKCE_KEY_LABEL = "instagram-connect pkce verifier v1";

export async function pkceVerifier(pkceKey: CryptoKey, nonce: Uint8Array<ArrayBuffer>): Promise<string> {
  return encodeBase64Url(new Uint8Array(await crypto.subtle.sign("HMAC", pkceKey, nonce)));
}

/** S256: base64url(SHA-256(verifier)), without padding. */
export function pkceChallenge(verifier: string): Promise<string> {
  return sha256Base64Url(verifier);
}

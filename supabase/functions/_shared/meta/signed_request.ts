// Meta's signed_request, as sent to the Deauthorize and Data Deletion Request callbacks: base64url
// signature "." base64url JSON payload, the signature being HMAC-SHA256 of the payload part (as sent)
// keyed by the app secret ("Data Deletion Request Callback"; "Deauthorize Callback"). Refused unless
// the signature matches (compared in constant time by subtle.verify), the algorithm is HMAC-SHA256,
// issued_at is neither in the future nor older than a day, and user_id is an app-scoped id.
import * as z from "zod/mini";
import { decodeBase64Url, encodeBase64Url } from "../crypto/base64url.ts";
import { AppError } from "../errors.ts";
import { idsAsStrings, META_ID } from "../ids.ts";

const MAX_LENGTH = 4096;
const MAX_AGE_SECONDS = 24 * 3600;
// Meta's clock and ours may differ by a little; a minute is tolerated, not an hour.
const CLOCK_SKEW_SECONDS = 60;

const Payload = z.object({
  // Compared as Meta writes it (the signature covers it anyway).
  algorithm: z.literal("HMAC-SHA256"),
  issued_at: z.number().check(z.int()),
  user_id: z.string().check(z.regex(META_ID)),
});

export interface SignedRequest {
  facebookUserId: string;
  issuedAt: Date;
  /** The signature part, canonical base64url: identifies this very request (for replays). */
  signature: string;
}

export interface SignedRequestVerifier {
  verify(value: string | null): Promise<SignedRequest>;
}

/**
 * `integerIds`: the Instagram app's requests, whose user_id Meta may write as a bare integer above 2^53
 * (its code exchange does; for signed_request Meta does not say): read as digits. The Facebook app's are
 * documented as strings ("Data Deletion Request Callback"), and a number there stays refused.
 */
export async function createSignedRequestVerifier(
  appSecret: string,
  now: () => number = Date.now,
  { integerIds = false }: { integerIds?: boolean } = {},
): Promise<SignedRequestVerifier> {
  const key = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(appSecret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["verify"],
  );
  const refuse = (reason: string): never => {
    throw new AppError("signed_request_invalid", { cause: { reason } });
  };

  return {
    async verify(value) {
      if (!value || value.length > MAX_LENGTH) return refuse("missing_or_oversized");
      const parts = value.split(".");
      if (parts.length !== 2) return refuse("malformed");
      const [signature, payload] = parts;
      const signatureBytes = decode(signature);
      // Only the canonical form (unpadded base64url that re-encodes to itself): any other spelling of
      // the same bytes would otherwise pass for another request.
      if (signatureBytes?.length !== 32 || encodeBase64Url(signatureBytes) !== signature) {
        return refuse("malformed");
      }
      if (!(await crypto.subtle.verify("HMAC", key, signatureBytes, new TextEncoder().encode(payload)))) {
        return refuse("bad_signature");
      }
      const claims = Payload.safeParse(parseJson(decode(payload), integerIds));
      if (!claims.success) return refuse("bad_payload");
      const age = now() / 1000 - claims.data.issued_at;
      if (age < -CLOCK_SKEW_SECONDS) return refuse("issued_in_future");
      if (age > MAX_AGE_SECONDS) return refuse("expired");
      return {
        facebookUserId: claims.data.user_id,
        issuedAt: new Date(claims.data.issued_at * 1000),
        signature,
      };
    },
  };
}

function decode(part: string): Uint8Array<ArrayBuffer> | undefined {
  try {
    return /^[A-Za-z0-9_-]*=*$/.test(part) ? decodeBase64Url(part.replace(/=+$/, "")) : undefined;
  } catch {
    return undefined;
  }
}

function parseJson(bytes: Uint8Array | undefined, integerIds: boolean): unknown {
  try {
    if (!bytes) return undefined;
    const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    return JSON.parse(integerIds ? idsAsStrings(text) : text);
  } catch {
    return undefined;
  }
}

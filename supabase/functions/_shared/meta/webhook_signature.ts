// Meta's webhook deliveries ("Webhooks - Getting Started"): the verification handshake repeats the
// Verify Token we chose, and every delivery carries `X-Hub-Signature-256: sha256=<hex>`, the
// HMAC-SHA256 of the raw body bytes keyed by the app secret. The signature is over the bytes as they
// came: JSON parsed and written again would not be the bytes Meta signed (whitespace, escapes), so
// nothing is parsed before this passes. A header that is missing or not of that form is refused before
// any byte of the body is read; a well-formed one is checked as the bytes arrive, every app's HMAC fed
// from the one read (node:crypto's createHmac, a Deno built-in: Web Crypto has no incremental HMAC).
import { createHmac, timingSafeEqual } from "node:crypto";
import type { WebhookApp } from "../database.ts";

const encoder = new TextEncoder();
const SIGNATURE = /^sha256=([0-9a-f]{64})$/i;

/** A delivery's signature being checked: fed the body's bytes as they arrive, then asked who signed them. */
export interface SignatureCheck {
  update(bytes: Uint8Array): void;
  /**
   * The app whose secret signed the bytes fed, or undefined. Every configured app's HMAC is computed and
   * compared in constant time, so the time taken does not tell which secret a forgery came near.
   */
  signer(): WebhookApp | undefined;
}

export interface WebhookVerifier {
  /** The handshake's hub.verify_token is ours. */
  isVerifyToken(given: string | undefined): Promise<boolean>;
  /**
   * A check of the delivery whose X-Hub-Signature-256 is `header`, or undefined when the header is
   * missing or not `sha256=<64 hex digits>` (nothing can match it: refuse without reading the body).
   */
  signatureCheck(header: string | undefined): SignatureCheck | undefined;
}

/** `appSecret`: the Facebook app's; `instagramAppSecret`: the Instagram Login app's (either may be absent). */
export async function createWebhookVerifier(
  appSecret: string | undefined,
  verifyToken: string,
  instagramAppSecret?: string,
): Promise<WebhookVerifier> {
  const secrets = ([["facebook", appSecret], ["instagram", instagramAppSecret]] as const)
    .filter((pair): pair is readonly [WebhookApp, string] => pair[1] !== undefined);
  // The token is compared as a MAC under a key of this instance: subtle.verify takes the same time
  // whatever prefix of the token a guess gets right.
  const tokenKey = await crypto.subtle.importKey(
    "raw",
    crypto.getRandomValues(new Uint8Array(32)),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign", "verify"],
  );
  const tokenMac = await crypto.subtle.sign("HMAC", tokenKey, encoder.encode(verifyToken));

  return {
    async isVerifyToken(given) {
      if (given === undefined || given.length > 1024) return false;
      return await crypto.subtle.verify("HMAC", tokenKey, tokenMac, encoder.encode(given));
    },
    signatureCheck(header) {
      const hex = header?.trim().match(SIGNATURE)?.[1];
      if (!hex) return undefined;
      const given = Uint8Array.from(hex.match(/../g)!, (byte) => parseInt(byte, 16));
      const macs = secrets.map(([app, secret]) => ({ app, mac: createHmac("sha256", secret) }));
      return {
        update(bytes) {
          for (const { mac } of macs) mac.update(bytes);
        },
        signer() {
          // Every one compared before choosing; should both match (one secret set for both apps), Facebook's.
          const matches = macs.map(({ app, mac }) => timingSafeEqual(mac.digest(), given) ? app : undefined);
          return matches.find((app) => app !== undefined);
        },
      };
    },
  };
}

// Meta's webhook deliveries ("Webhooks - Getting Started"): the verification handshake repeats the
// Verify Token we chose, and every delivery carries `X-Hub-Signature-256: sha256=<hex>`, the
// HMAC-SHA256 of the raw body bytes keyed by the app secret. Both are compared in constant time
// (subtle.verify), and the signature over the bytes as they came: JSON parsed and written again
// would not be the bytes Meta signed (whitespace, escapes), so nothing is parsed before this passes.
const encoder = new TextEncoder();
const SIGNATURE = /^sha256=([0-9a-f]{64})$/i;

export interface WebhookVerifier {
  /** The handshake's hub.verify_token is ours. */
  isVerifyToken(given: string | undefined): Promise<boolean>;
  /** `header` (X-Hub-Signature-256) is the app secret's HMAC-SHA256 of exactly `body`. */
  isSignedByApp(header: string | undefined, body: Uint8Array<ArrayBuffer>): Promise<boolean>;
}

export async function createWebhookVerifier(
  appSecret: string,
  verifyToken: string,
): Promise<WebhookVerifier> {
  const hmac = (raw: Uint8Array<ArrayBuffer>, usages: KeyUsage[]) =>
    crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, usages);
  const appKey = await hmac(encoder.encode(appSecret), ["verify"]);
  // The token is compared as a MAC under a key of this instance: subtle.verify takes the same time
  // whatever prefix of the token a guess gets right.
  const tokenKey = await hmac(crypto.getRandomValues(new Uint8Array(32)), ["sign", "verify"]);
  const tokenMac = await crypto.subtle.sign("HMAC", tokenKey, encoder.encode(verifyToken));

  return {
    async isVerifyToken(given) {
      if (given === undefined || given.length > 1024) return false;
      return await crypto.subtle.verify("HMAC", tokenKey, tokenMac, encoder.encode(given));
    },
    async isSignedByApp(header, body) {
      const hex = header?.trim().match(SIGNATURE)?.[1];
      if (!hex) return false;
      const signature = Uint8Array.from(hex.match(/../g)!, (byte) => parseInt(byte, 16));
      return await crypto.subtle.verify("HMAC", appKey, signature, body);
    },
  };
}

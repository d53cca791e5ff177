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
  /**
   * `header` (X-Hub-Signature-256) is the Facebook app secret's HMAC-SHA256 of exactly `body`; always
   * false when no Facebook app is configured.
   */
  isSignedByApp(header: string | undefined, body: Uint8Array<ArrayBuffer>): Promise<boolean>;
  /** Likewise under the Instagram Login app's secret (its deliveries are signed with it). */
  isSignedByInstagramApp(header: string | undefined, body: Uint8Array<ArrayBuffer>): Promise<boolean>;
}

/** `appSecret`: the Facebook app's; `instagramAppSecret`: the Instagram Login app's (either may be absent). */
export async function createWebhookVerifier(
  appSecret: string | undefined,
  verifyToken: string,
  instagramAppSecret?: string,
): Promise<WebhookVerifier> {
  const hmac = (raw: Uint8Array<ArrayBuffer>, usages: KeyUsage[]) =>
    crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, usages);
  const appKey = appSecret === undefined ? undefined : await hmac(encoder.encode(appSecret), ["verify"]);
  const instagramKey = instagramAppSecret === undefined
    ? undefined
    : await hmac(encoder.encode(instagramAppSecret), ["verify"]);
  const isSignedBy = async (
    key: CryptoKey | undefined,
    header: string | undefined,
    body: Uint8Array<ArrayBuffer>,
  ) => {
    const hex = header?.trim().match(SIGNATURE)?.[1];
    if (!hex || !key) return false;
    const signature = Uint8Array.from(hex.match(/../g)!, (byte) => parseInt(byte, 16));
    return await crypto.subtle.verify("HMAC", key, signature, body);
  };
  // The token is compared as a MAC under a key of this instance: subtle.verify takes the same time
  // whatever prefix of the token a guess gets right.
  const tokenKey = await hmac(crypto.getRandomValues(new Uint8Array(32)), ["sign", "verify"]);
  const tokenMac = await crypto.subtle.sign("HMAC", tokenKey, encoder.encode(verifyToken));

  return {
    async isVerifyToken(given) {
      if (given === undefined || given.length > 1024) return false;
      return await crypto.subtle.verify("HMAC", tokenKey, tokenMac, encoder.encode(given));
    },
    isSignedByApp: (header, body) => isSignedBy(appKey, header, body),
    isSignedByInstagramApp: (header, body) => isSignedBy(instagramKey, header, body),
  };
}

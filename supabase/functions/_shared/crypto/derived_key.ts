// Keys derived from the Meta app secret with HKDF-SHA256, one per purpose (a label each), so no new
// secret has to be configured and a key derived for one purpose is useless for any other.
export async function deriveHmacKey(
  appSecret: string,
  label: string,
  usages: ("sign" | "verify")[],
): Promise<CryptoKey> {
  const secret = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(appSecret),
    "HKDF",
    false,
    ["deriveKey"],
  );
  return await crypto.subtle.deriveKey(
    { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(), info: new TextEncoder().encode(label) },
    secret,
    { name: "HMAC", hash: "SHA-256", length: 256 },
    false,
    usages,
  );
}

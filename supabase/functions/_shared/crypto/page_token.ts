// Page access tokens are encrypted before they reach the database (AES-256-GCM, Web Crypto), so a
// dump, a backup or a logged row never holds a usable token. Stored form: "v1.<iv>.<ciphertext>"
// (base64url). The row's doctor and page ids are bound as additional data, so a ciphertext copied to
// another row does not decrypt. A pending connection stores its Pages' tokens under the same binding,
// so finishing a connection copies the ciphertext as it is. The webhook worker uses decryptPageToken.
import { decodeBase64Url, encodeBase64Url } from "./base64url.ts";

const FORMAT = "v1";

export interface TokenBinding {
  doctorId: string;
  pageId: string;
}

export function importTokenKey(rawKey: Uint8Array<ArrayBuffer>): Promise<CryptoKey> {
  if (rawKey.length !== 32) throw new TypeError("the token encryption key must be 32 bytes");
  return crypto.subtle.importKey("raw", rawKey, "AES-GCM", false, ["encrypt", "decrypt"]);
}

export async function encryptPageToken(
  key: CryptoKey,
  token: string,
  binding: TokenBinding,
): Promise<string> {
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const ciphertext = await crypto.subtle.encrypt(
    { name: "AES-GCM", iv, additionalData: additionalData(binding) },
    key,
    new TextEncoder().encode(token),
  );
  return `${FORMAT}.${encodeBase64Url(iv)}.${encodeBase64Url(new Uint8Array(ciphertext))}`;
}

/** Throws when the value was not produced by encryptPageToken with this key for this doctor and page. */
export async function decryptPageToken(
  key: CryptoKey,
  stored: string,
  binding: TokenBinding,
): Promise<string> {
  const [format, iv, ciphertext] = stored.split(".");
  if (format !== FORMAT || !iv || !ciphertext) throw new Error(`unsupported token format "${format}"`);
  const plaintext = await crypto.subtle.decrypt(
    { name: "AES-GCM", iv: decodeBase64Url(iv), additionalData: additionalData(binding) },
    key,
    decodeBase64Url(ciphertext),
  );
  return new TextDecoder().decode(plaintext);
}

function additionalData({ doctorId, pageId }: TokenBinding): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(`doctor_instagram:${doctorId}:${pageId}`);
}

// The hashes this project needs, on Web Crypto: SHA-256 of what is stored instead of a secret
// (state nonces, pending tokens), and Meta's appsecret_proof (hex HMAC-SHA256 keyed by the app secret).
import { encodeBase64Url } from "./base64url.ts";

const encoder = new TextEncoder();

export async function sha256Hex(data: string | Uint8Array<ArrayBuffer>): Promise<string> {
  const bytes = typeof data === "string" ? encoder.encode(data) : data;
  return toHex(await crypto.subtle.digest("SHA-256", bytes));
}

export async function sha256Base64Url(text: string): Promise<string> {
  return encodeBase64Url(new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(text))));
}

export async function hmacSha256Hex(
  secret: string | CryptoKey,
  message: string | Uint8Array<ArrayBuffer>,
): Promise<string> {
  const key = typeof secret === "string"
    ? await crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, [
      "sign",
    ])
    : secret;
  const bytes = typeof message === "string" ? encoder.encode(message) : message;
  return toHex(await crypto.subtle.sign("HMAC", key, bytes));
}

/** `bytes` random bytes as base64url: 32 bytes give 43 characters and 256 bits to guess. */
export function randomBase64Url(bytes = 32): string {
  return encodeBase64Url(crypto.getRandomValues(new Uint8Array(bytes)));
}

function toHex(buffer: ArrayBuffer): string {
  return Array.from(new Uint8Array(buffer), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

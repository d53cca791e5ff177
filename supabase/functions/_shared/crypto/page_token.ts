// Page access tokens are encrypted before they reach the database (AES-256-GCM, Web Crypto), so a
// dump, a backup or a logged row never holds a usable token. The row's doctor and page ids are bound
// as additional data, so a ciphertext copied to another row does not decrypt. A pending connection
// stores its Pages' tokens under the same binding, so finishing a connection copies the ciphertext as
// it is.
//
// The keys form a ring (config part `tokens`: INSTAGRAM_TOKEN_ENCRYPTION_KEYS, primary first), so a
// key can be replaced without making stored tokens unreadable: every key of the ring decrypts, only
// the primary encrypts, and each stored value names its key. Stored forms (base64url parts):
//   v2.<key id>.<iv>.<ciphertext>   what every ring writes; the key id is authenticated too
//   v1.<iv>.<ciphertext>            written before rotation existed: read with the key whose id is
//                                   `legacy` (the old single INSTAGRAM_TOKEN_ENCRYPTION_KEY is that key)
// The webhook worker decrypts with the same ring: importTokenKeyring(config.tokens.keys).decrypt(...).
import { decodeBase64Url, encodeBase64Url } from "./base64url.ts";

/** The id under which v1 values (which carry no key id) are read. */
export const LEGACY_KEY_ID = "legacy";

/** What a key id may be: it is written into every stored value, so short and plain. */
export const TOKEN_KEY_ID = /^[a-z0-9][a-z0-9_-]{0,31}$/;

/**
 * What a stored token is bound to: the doctor and the Page (the Facebook path, as always), or the doctor
 * and the Instagram professional account (Instagram Login, which has no Page). The two never collide:
 * an account binding reads `doctor_instagram:<doctor>:ig:<account>`, and a Page id is digits only.
 */
export type TokenBinding =
  | { doctorId: string; pageId: string; instagramAccountId?: never }
  | { doctorId: string; instagramAccountId: string; pageId?: never };

/** One key of the ring: its id and its 32 raw bytes. */
export interface TokenKey {
  id: string;
  key: Uint8Array<ArrayBuffer>;
}

export interface TokenKeyring {
  /** The key every new value is encrypted with (the first listed). */
  readonly primaryId: string;
  /** Every key id of the ring, primary first. */
  readonly ids: readonly string[];
  /** `v2.<primaryId>.<iv>.<ciphertext>`, bound to the doctor and the Page. */
  encrypt(token: string, binding: TokenBinding): Promise<string>;
  /**
   * The token, or a throw: MissingTokenKeyError when the value's key is not in the ring; another error
   * when the value is in no known form, or was not encrypted by that key for this doctor and Page.
   */
  decrypt(stored: string, binding: TokenBinding): Promise<string>;
  /** The id of the key a stored value was written with (`legacy` for v1); throws on an unknown form. */
  keyIdOf(stored: string): string;
}

/** A stored value whose key the ring does not hold (removed too early, or never configured here). */
export class MissingTokenKeyError extends Error {
  override name = "MissingTokenKeyError";
  constructor(readonly keyId: string, ringIds: readonly string[]) {
    super(
      `this token was encrypted with the key "${keyId}", which the key ring (${
        ringIds.join(", ")
      }) does not hold: put it back in INSTAGRAM_TOKEN_ENCRYPTION_KEYS`,
    );
  }
}

/**
 * The ring, primary first. Refuses (TypeError) an empty ring, an id that is not TOKEN_KEY_ID (not
 * named: it may be a pasted key), an id listed twice, a key that is not 32 bytes; never shows a key.
 */
export async function importTokenKeyring(keys: TokenKey[]): Promise<TokenKeyring> {
  if (keys.length === 0) throw new TypeError("the token key ring needs at least one key");
  const cryptoKeys = new Map<string, CryptoKey>();
  for (const { id, key } of keys) {
    if (!TOKEN_KEY_ID.test(id)) {
      throw new TypeError(`a token key id must be 1 to 32 of a-z, 0-9, _ and -, first a letter or digit`);
    }
    if (cryptoKeys.has(id)) throw new TypeError(`the token key id "${id}" is listed twice`);
    if (key.length !== 32) throw new TypeError(`the token key "${id}" must be 32 bytes`);
    cryptoKeys.set(id, await crypto.subtle.importKey("raw", key, "AES-GCM", false, ["encrypt", "decrypt"]));
  }
  const ids = Object.freeze([...cryptoKeys.keys()]);
  const primaryId = ids[0];
  const primary = cryptoKeys.get(primaryId)!;

  return Object.freeze({
    primaryId,
    ids,
    async encrypt(token: string, binding: TokenBinding): Promise<string> {
      const iv = crypto.getRandomValues(new Uint8Array(12));
      const ciphertext = await crypto.subtle.encrypt(
        { name: "AES-GCM", iv, additionalData: additionalData("v2", primaryId, binding) },
        primary,
        new TextEncoder().encode(token),
      );
      return `v2.${primaryId}.${encodeBase64Url(iv)}.${encodeBase64Url(new Uint8Array(ciphertext))}`;
    },
    async decrypt(stored: string, binding: TokenBinding): Promise<string> {
      const value = parse(stored);
      const key = cryptoKeys.get(value.keyId);
      if (!key) throw new MissingTokenKeyError(value.keyId, ids);
      const plaintext = await crypto.subtle.decrypt(
        {
          name: "AES-GCM",
          iv: decodeBase64Url(value.iv),
          additionalData: additionalData(value.format, value.keyId, binding),
        },
        key,
        decodeBase64Url(value.ciphertext),
      );
      return new TextDecoder().decode(plaintext);
    },
    keyIdOf: (stored: string) => parse(stored).keyId,
  });
}

interface StoredValue {
  format: "v1" | "v2";
  keyId: string;
  iv: string;
  ciphertext: string;
}

const PART = /^[A-Za-z0-9_-]+$/;

function parse(stored: string): StoredValue {
  const parts = stored.split(".");
  if (parts.every((part) => PART.test(part))) {
    if (parts[0] === "v1" && parts.length === 3) {
      return { format: "v1", keyId: LEGACY_KEY_ID, iv: parts[1], ciphertext: parts[2] };
    }
    if (parts[0] === "v2" && parts.length === 4 && TOKEN_KEY_ID.test(parts[1])) {
      return { format: "v2", keyId: parts[1], iv: parts[2], ciphertext: parts[3] };
    }
  }
  // Only a version prefix is named: the rest of an unknown value could be a raw token.
  const version = /^v\d{1,3}$/.test(parts[0]) ? ` (${parts[0]})` : "";
  throw new Error(
    `unsupported token format${version}: a stored token is v2.<key id>.<iv>.<ciphertext> or v1.<iv>.<ciphertext>`,
  );
}

// v1 bound the doctor and the Page only (kept as it was, so v1 values still decrypt); v2 also binds
// its own header, so a value relabelled with another key id does not decrypt even under the same key.
// A Page binding's bytes are those of before Instagram Login (stored tokens still decrypt).
function additionalData(
  format: "v1" | "v2",
  keyId: string,
  binding: TokenBinding,
): Uint8Array<ArrayBuffer> {
  const row = binding.instagramAccountId === undefined
    ? `doctor_instagram:${binding.doctorId}:${binding.pageId}`
    : `doctor_instagram:${binding.doctorId}:ig:${binding.instagramAccountId}`;
  return new TextEncoder().encode(format === "v1" ? row : `v2.${keyId}:${row}`);
}

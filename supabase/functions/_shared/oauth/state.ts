// The OAuth `state`: a compact, HMAC-SHA256-signed token binding the flow to one doctor, one random
// nonce and an expiry. Only the nonce's SHA-256 is stored server-side (create_oauth_state), so the
// database never holds a usable state. Layout of the signed payload (all big-endian):
//   version (1 byte) | expiry, unix seconds (4) | nonce (16) | doctor uuid (16) | page id, ASCII digits (0-32)
// and the state is base64url(payload) "." base64url(HMAC(payload)): 94 characters without a page id.
// The nonce also yields the flow's PKCE verifier (see pkce.ts).
// The version byte also signs the path (`via`): 2 = facebook, 3 = instagram. A state signed before the
// Instagram path existed (version 1) reads as facebook, the only path there was. Being signed, a state of
// one path can never finish the other: the callback picks the flow from the verified via.
import { decodeBase64Url, encodeBase64Url } from "../crypto/base64url.ts";
import { deriveHmacKey } from "../crypto/derived_key.ts";
import { sha256Hex } from "../crypto/digest.ts";
import { AppError } from "../errors.ts";
import { META_ID, UUID } from "../ids.ts";
import { PKCE_KEY_LABEL, pkceChallenge, pkceVerifier } from "./pkce.ts";

/** Signed before `via` existed: Facebook Login. */
const LEGACY_VERSION = 1;
export type LoginVia = "facebook" | "instagram";
const VERSION_OF: Record<LoginVia, number> = { facebook: 2, instagram: 3 };
const VIA_OF: Record<number, LoginVia> = {
  [LEGACY_VERSION]: "facebook",
  2: "facebook",
  3: "instagram",
};
const HEADER_BYTES = 1 + 4 + 16 + 16;
const MAX_PAGE_ID_BYTES = 32;

export interface StateClaims {
  doctorId: string;
  /** The login path this state was issued for (signed). */
  via: LoginVia;
  expiresAt: Date;
  /** The Page the doctor asked for when starting the flow, if any: the only Page offered then. */
  pageId?: string;
  /** Hex SHA-256 of the nonce: the server-side record's key. */
  nonceHash: string;
  /** The PKCE code_verifier of this flow (secret: goes to Meta's token endpoint only). */
  codeVerifier: string;
}

export interface IssuedState extends StateClaims {
  state: string;
  /** S256 challenge of codeVerifier, for the dialog URL. */
  codeChallenge: string;
}

export interface OAuthStates {
  issue(
    input: {
      doctorId: string;
      ttlSeconds: number;
      pageId?: string;
      via?: LoginVia;
    },
  ): Promise<IssuedState>;
  /** Checks signature and expiry; throws state_invalid or state_expired. */
  verify(state: string): Promise<StateClaims>;
}

export async function createOAuthStates(
  appSecret: string,
  now: () => number = Date.now,
): Promise<OAuthStates> {
  const key = await deriveHmacKey(
    appSecret,
    "instagram-connect oauth state v1",
    ["sign", "verify"],
  );
  const pkceKey = await deriveHmacKey(appSecret, PKCE_KEY_LABEL, ["sign"]);

  return {
    async issue({ doctorId, ttlSeconds, pageId, via = "facebook" }) {
      if (!UUID.test(doctorId)) throw new TypeError("doctorId must be a UUID");
      if (pageId !== undefined && !META_ID.test(pageId)) {
        throw new TypeError("pageId must be numeric");
      }
      const expiresAt = new Date(
        (Math.floor(now() / 1000) + ttlSeconds) * 1000,
      );
      const nonce = crypto.getRandomValues(new Uint8Array(16));
      const payload = new Uint8Array(HEADER_BYTES + (pageId?.length ?? 0));
      const view = new DataView(payload.buffer);
      view.setUint8(0, VERSION_OF[via]);
      view.setUint32(1, expiresAt.getTime() / 1000);
      payload.set(nonce, 5);
      payload.set(uuidToBytes(doctorId), 21);
      if (pageId) payload.set(new TextEncoder().encode(pageId), HEADER_BYTES);
      const signature = new Uint8Array(
        await crypto.subtle.sign("HMAC", key, payload),
      );
      const codeVerifier = await pkceVerifier(pkceKey, nonce);
      return {
        state: `${encodeBase64Url(payload)}.${encodeBase64Url(signature)}`,
        doctorId: doctorId.toLowerCase(),
        via,
        expiresAt,
        pageId,
        nonceHash: await sha256Hex(nonce),
        codeVerifier,
        codeChallenge: await pkceChallenge(codeVerifier),
      };
    },

    async verify(state) {
      const [payload, signature] = decodeParts(state);
      // subtle.verify compares in constant time, so the signature check leaks nothing through timing.
      if (
        !payload || !signature ||
        !(await crypto.subtle.verify("HMAC", key, signature, payload))
      ) {
        throw new AppError("state_invalid");
      }
      const view = new DataView(
        payload.buffer,
        payload.byteOffset,
        payload.byteLength,
      );
      const expiresAt = new Date(view.getUint32(1) * 1000);
      if (expiresAt.getTime() <= now()) throw new AppError("state_expired");
      const nonce = payload.slice(5, 21);
      return {
        doctorId: bytesToUuid(payload.subarray(21, 37)),
        via: VIA_OF[payload[0]],
        expiresAt,
        pageId: payload.length > HEADER_BYTES
          ? new TextDecoder().decode(payload.subarray(HEADER_BYTES))
          : undefined,
        nonceHash: await sha256Hex(nonce),
        codeVerifier: await pkceVerifier(pkceKey, nonce),
      };
    },
  };
}

function decodeParts(
  state: string,
): [Uint8Array<ArrayBuffer>?, Uint8Array<ArrayBuffer>?] {
  const parts = state.split(".");
  if (parts.length !== 2 || state.length > 200) return [];
  try {
    const [payload, signature] = parts.map((part) => decodeBase64Url(part));
    const validPayload = payload.length >= HEADER_BYTES &&
      payload.length <= HEADER_BYTES + MAX_PAGE_ID_BYTES &&
      payload[0] in VIA_OF;
    return validPayload && signature.length === 32 ? [payload, signature] : [];
  } catch {
    return [];
  }
}

function uuidToBytes(uuid: string): Uint8Array<ArrayBuffer> {
  const hex = uuid.replace(/-/g, "");
  return Uint8Array.from(
    { length: 16 },
    (_, index) => parseInt(hex.slice(index * 2, index * 2 + 2), 16),
  );
}

function bytesToUuid(bytes: Uint8Array): string {
  const hex = Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0"))
    .join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

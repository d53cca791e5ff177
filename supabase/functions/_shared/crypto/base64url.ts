// jose already ships a vetted base64url codec (it is in the graph through @supabase/server).
import { base64url } from "jose";

export const encodeBase64Url = (bytes: Uint8Array): string => base64url.encode(bytes);
export const decodeBase64Url = (text: string): Uint8Array<ArrayBuffer> =>
  new Uint8Array(base64url.decode(text));

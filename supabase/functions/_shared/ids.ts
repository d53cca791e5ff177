// The shapes of the ids this project handles, in one place: Supabase user ids are UUIDs; Meta's Page,
// Instagram account and app-scoped user ids are decimal strings (the database checks the same shapes).
import * as z from "zod/mini";

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const META_ID = /^\d{1,32}$/;

/** A Facebook Page id in a request; null counts as absent (clients send it that way). */
export const optionalPageId = z.pipe(
  z.nullish(z.string().check(z.regex(META_ID, "must be a numeric Facebook Page id"))),
  z.transform((value) => value ?? undefined),
);

/**
 * Every "id"/"user_id" written as a bare integer becomes a string before JSON.parse can round it: Meta
 * writes some ids as JSON numbers (the Instagram Login code exchange's user_id; a webhook may), and ids
 * above 2^53 would lose their last digits. Inside a JSON string a quote is escaped, so text is untouched.
 */
export function idsAsStrings(text: string): string {
  return text.replace(/("(?:id|user_id)"\s*:\s*)(-?\d+)(?=\s*[,}\]])/g, '$1"$2"');
}

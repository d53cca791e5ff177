// A key removed from INSTAGRAM_TOKEN_ENCRYPTION_KEYS while stored tokens still use it leaves those
// tokens unreadable: their links stop working until each doctor reconnects. Before anything
// re-encrypts or relies on the ring, the database's count of tokens per key (token_key_usage(),
// 10_token_keys.sql) is compared with the ring, and a gap is refused loudly, naming each key id (no
// secret) and how many tokens need it.
import type { TokenKeyUsage } from "../database.ts";
import type { TokenKeyring } from "./page_token.ts";

export interface MissingKey {
  /** The key id the tokens name; null for values in no form the functions read. */
  keyId: string | null;
  /** Stored tokens under it: links and pending connections' Pages. */
  rows: number;
}

/** The key ids in use that the ring does not hold, with their token counts, in the order given. */
export function missingKeys(
  usage: readonly TokenKeyUsage[],
  ring: Pick<TokenKeyring, "ids">,
): MissingKey[] {
  return usage
    .filter((row) => row.key_id === null || !ring.ids.includes(row.key_id))
    .map((row) => ({ keyId: row.key_id, rows: Number(row.link_tokens) + Number(row.pending_tokens) }))
    .filter((missing) => missing.rows > 0);
}

/** One line for a log or an error: which keys are missing, for how many tokens, and what to do. */
export function describeMissingKeys(missing: readonly MissingKey[]): string {
  const each = missing.map(({ keyId, rows }) => {
    const tokens = `${rows} stored token${rows === 1 ? "" : "s"}`;
    return keyId === null ? `${tokens} in no known format` : `key "${keyId}" (${tokens})`;
  });
  return `INSTAGRAM_TOKEN_ENCRYPTION_KEYS lacks keys that stored tokens use: ${each.join(", ")}; ` +
    "put them back until no token uses them (README, Rotating the token encryption key)";
}

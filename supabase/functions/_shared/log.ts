// One JSON object per line, with the function name and the request's correlation id, so a platform
// log search on either finds every line of a flow. Values are scrubbed before they are written:
// secrets may hide in error messages (Deno puts the request URL, query and all, in fetch errors).

type Fields = Record<string, unknown>;
type Level = "info" | "warn" | "error";

const SECRET_KEY =
  /token|secret|password|authorization|cookie|apikey|api_key|verifier|^code$|^state$|^pending$|key$/i;
/** Keys that name a kind of token, never hold one: an operator reads which kind of link a line is about. */
const NOT_SECRET = new Set(["token_kind", "previous_token_kind"]);
const SECRET_QUERY =
  /([?&#](?:access_token|client_secret|code|code_verifier|fb_exchange_token|appsecret_proof|state|input_token|instagram_pending)=)[^&\s"')]+/gi;
const BEARER = /(bearer\s+)[\w.~+/=-]+/gi;
// Graph paths that name a Facebook user (the revoke call): personal data, not needed to operate.
const USER_PATH = /\/\d{5,}\/permissions/g;

export interface Logger {
  info(event: string, fields?: Fields): void;
  warn(event: string, fields?: Fields): void;
  error(event: string, fields?: Fields): void;
  child(fields: Fields): Logger;
}

export function createLogger(base: Fields): Logger {
  const write = (level: Level, event: string, fields: Fields = {}) => {
    const line = JSON.stringify(scrub({ level, event, time: new Date().toISOString(), ...base, ...fields }));
    if (level === "info") console.log(line);
    else console.error(line);
  };
  return {
    info: (event, fields) => write("info", event, fields),
    warn: (event, fields) => write("warn", event, fields),
    error: (event, fields) => write("error", event, fields),
    child: (fields) => createLogger({ ...base, ...fields }),
  };
}

/** Removes secrets from anything about to be logged; exported for the tests that prove it. */
export function scrub(value: unknown, depth = 0): unknown {
  if (typeof value === "string") {
    return value.replace(SECRET_QUERY, "$1[redacted]").replace(BEARER, "$1[redacted]")
      .replace(USER_PATH, "/[user]/permissions").slice(0, 1000);
  }
  if (value instanceof Error) {
    return scrub({ name: value.name, message: value.message, cause: value.cause }, depth);
  }
  // A Date has no enumerable fields: without this it would be written as {}. An invalid one stays null.
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString();
  if (value === null || typeof value !== "object" || depth > 4) return value;
  if (Array.isArray(value)) return value.map((item) => scrub(item, depth + 1));
  return Object.fromEntries(
    Object.entries(value).map((
      [key, item],
    ) => [key, SECRET_KEY.test(key) && !NOT_SECRET.has(key) ? "[redacted]" : scrub(item, depth + 1)]),
  );
}

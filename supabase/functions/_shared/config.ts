// Every setting the two functions read, validated once at start-up (zod/mini: the same validation as
// zod's classic API at a fortieth of the code to load). A bad value stops the function with one line
// per variable saying what it must be; values are never echoed, since most of them are secrets.
import * as z from "zod/mini";

const LOOPBACK = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/;

/** https everywhere; plain http only for loopback, which is what local development uses. */
function isWebUrl(value: string): boolean {
  if (!URL.canParse(value)) return false;
  const url = new URL(value);
  return url.protocol === "https:" || (url.protocol === "http:" && LOOPBACK.test(url.hostname));
}

const webUrl = z.string().check(z.refine(isWebUrl));
const digits = (min: number, max: number) => z.string().check(z.regex(new RegExp(`^\\d{${min},${max}}$`)));
const integer = (min: number, max: number, fallback: number) =>
  z._default(z.coerce.number().check(z.int(), z.gte(min), z.lte(max)), fallback);
const names = (fallback: string[], { allowEmpty }: { allowEmpty: boolean }) =>
  z._default(
    z.pipe(
      z.string(),
      z.transform((value) => value.split(",").map((item) => item.trim()).filter(Boolean)),
    ).check(
      z.refine((list) =>
        (allowEmpty || list.length > 0) && list.every((item) => /^[a-z_]{1,64}$/.test(item))
      ),
    ),
    fallback,
  );
const origins = z._default(
  z.pipe(z.string(), z.transform((value) => value.split(",").map((item) => item.trim()).filter(Boolean)))
    .check(z.refine((list) => list.every((item) => URL.canParse(item) && new URL(item).origin === item))),
  [],
);

// Each variable: its schema, and what it must be (the whole message when its value is refused).
const VARIABLES = {
  INSTAGRAM_APP_ID: [digits(5, 25), "must be the numeric Meta app id (App settings > Basic)"],
  INSTAGRAM_APP_SECRET: [
    z.string().check(z.regex(/^[0-9a-f]{32}$|^\S{16,}$/)),
    "must be the Meta app secret (App settings > Basic)",
  ],
  // OAuth redirect URIs carry no fragment (RFC 6749 3.1.2); Meta compares them character for character.
  INSTAGRAM_REDIRECT_URI: [
    webUrl.check(z.refine((value) => !value.includes("#"))),
    "must be an https URL (http only for localhost) without a #fragment, the callback's address",
  ],
  INSTAGRAM_FRONTEND_REDIRECT_URI: [
    z.optional(webUrl.check(z.refine((value) => !value.includes("#")))),
    "must be an https URL (http only for localhost) without a #fragment: the callback puts the pending connection's token there",
  ],
  INSTAGRAM_TOKEN_ENCRYPTION_KEY: [
    z.string().check(z.refine((value) => decodeBase64(value)?.length === 32)),
    "must be 32 random bytes in base64 (openssl rand -base64 32)",
  ],
  INSTAGRAM_GRAPH_VERSION: [
    z._default(z.string().check(z.regex(/^v\d{1,3}\.\d$/)), "v27.0"),
    "must be a Graph API version such as v27.0",
  ],
  // Why each one: README, "Meta app set-up".
  INSTAGRAM_SCOPES: [
    names([
      "pages_show_list",
      "instagram_basic",
      "instagram_manage_messages",
      "pages_manage_metadata",
      "business_management",
    ], { allowEmpty: false }),
    "must be a comma-separated list of Meta permission names (at least one)",
  ],
  // From the Messenger Platform's "Webhook Events Reference" for Instagram; empty turns it off.
  INSTAGRAM_WEBHOOK_FIELDS: [
    names(["messages", "messaging_postbacks", "messaging_seen", "message_reactions"], { allowEmpty: true }),
    "must be a comma-separated list of webhook field names (or empty for none)",
  ],
  INSTAGRAM_CONFIG_ID: [
    z.optional(digits(1, 25)),
    "must be the numeric Facebook Login for Business configuration id",
  ],
  // On by default: see README, "PKCE". "off" only if Meta ever refuses the PKCE parameters.
  INSTAGRAM_PKCE: [z._default(z.enum(["on", "off"]), "on"), "must be on or off"],
  INSTAGRAM_STATE_TTL_SECONDS: [integer(60, 3600, 600), "must be a whole number of seconds from 60 to 3600"],
  INSTAGRAM_ALLOWED_ORIGINS: [
    origins,
    "must be a comma-separated list of origins such as https://app.example.com",
  ],
  INSTAGRAM_META_TIMEOUT_MS: [integer(50, 60_000, 8_000), "must be milliseconds from 50 to 60000"],
  INSTAGRAM_META_MAX_RETRIES: [integer(0, 5, 2), "must be a whole number from 0 to 5"],
  INSTAGRAM_CALLBACK_DEADLINE_MS: [integer(100, 120_000, 25_000), "must be milliseconds from 100 to 120000"],
  INSTAGRAM_DB_TIMEOUT_MS: [integer(50, 60_000, 5_000), "must be milliseconds from 50 to 60000"],
  INSTAGRAM_GRAPH_BASE_URL: [
    z._default(webUrl, "https://graph.facebook.com"),
    "must be an https URL (http only for localhost)",
  ],
  INSTAGRAM_DIALOG_BASE_URL: [
    z._default(webUrl, "https://www.facebook.com"),
    "must be an https URL (http only for localhost)",
  ],
  SUPABASE_URL: [webUrl, "must be the project's https URL (provided by Supabase)"],
  SUPABASE_SECRET_KEYS: [
    z.optional(z.string().check(z.refine((value) => Object.keys(parseKeyMap(value) ?? {}).length > 0))),
    'must be a JSON map of secret keys such as {"default":"sb_secret_..."} (provided by Supabase)',
  ],
  SUPABASE_JWKS: [
    z.optional(z.string().check(z.refine((value) => parseJwks(value) !== undefined))),
    'must be a JSON Web Key Set ({"keys":[...]}) (provided by Supabase)',
  ],
  SUPABASE_JWKS_URL: [
    z.optional(webUrl),
    "must be an https URL of the project's JWKS (http only for localhost)",
  ],
} as const;

const schema = z.object(
  Object.fromEntries(Object.entries(VARIABLES).map(([name, [variable]]) => [name, variable])) as {
    [K in keyof typeof VARIABLES]: (typeof VARIABLES)[K][0];
  },
);

export type Jwks = { keys: Record<string, unknown>[] } | URL;

export type Config = Readonly<{
  appId: string;
  appSecret: string;
  redirectUri: string;
  frontendRedirectUri: string | undefined;
  tokenEncryptionKey: Uint8Array<ArrayBuffer>;
  graphVersion: string;
  scopes: readonly string[];
  /** Fields each linked Page is subscribed to; empty: no subscription. */
  webhookFields: readonly string[];
  configId: string | undefined;
  stateTtlSeconds: number;
  allowedOrigins: readonly string[];
  metaTimeoutMs: number;
  metaMaxRetries: number;
  callbackDeadlineMs: number;
  dbTimeoutMs: number;
  graphBaseUrl: string;
  dialogBaseUrl: string;
  /** Send a PKCE challenge with the dialog and the verifier with the code exchange. */
  pkce: boolean;
  supabase: Readonly<{
    url: string;
    /** The key the functions call the Data API with (service_role). */
    secretKey: string;
    /** Where doctors' session tokens are verified: inline keys, or the project's JWKS endpoint. */
    jwks: Jwks;
  }>;
}>;

export class ConfigError extends Error {
  override name = "ConfigError";
  constructor(readonly problems: string[]) {
    super(`Invalid configuration: ${problems.join("; ")}. See .env.example.`);
  }
}

/**
 * Reads and validates the process environment. Empty variables count as unset, as in most .env
 * tooling, except INSTAGRAM_WEBHOOK_FIELDS, where empty means no subscription. The legacy key names
 * (SUPABASE_SERVICE_ROLE_KEY, SUPABASE_SECRET_KEY) stand in for SUPABASE_SECRET_KEYS.
 */
export function loadConfig(env: Record<string, string> = Deno.env.toObject()): Config {
  const present = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== ""));
  if (env.INSTAGRAM_WEBHOOK_FIELDS?.trim() === "") present.INSTAGRAM_WEBHOOK_FIELDS = "";
  const parsed = schema.safeParse(present);
  const problems = parsed.success
    ? []
    : [...new Set(parsed.error.issues.map((issue) => String(issue.path[0])))]
      .map((name) =>
        present[name] === undefined
          ? `${name} is required`
          : `${name} ${VARIABLES[name as keyof typeof VARIABLES]?.[1] ?? "is invalid"}`
      );
  const secretKey = Object.values(parseKeyMap(present.SUPABASE_SECRET_KEYS ?? "") ?? {})[0] ??
    present.SUPABASE_SECRET_KEY ?? present.SUPABASE_SERVICE_ROLE_KEY;
  if (!secretKey && present.SUPABASE_SECRET_KEYS === undefined) {
    problems.push(
      "SUPABASE_SECRET_KEYS is required (provided by Supabase; SUPABASE_SERVICE_ROLE_KEY also works)",
    );
  }
  if (problems.length || !parsed.success) throw new ConfigError(problems);

  const vars = parsed.data;
  return Object.freeze({
    appId: vars.INSTAGRAM_APP_ID,
    appSecret: vars.INSTAGRAM_APP_SECRET,
    redirectUri: vars.INSTAGRAM_REDIRECT_URI,
    frontendRedirectUri: vars.INSTAGRAM_FRONTEND_REDIRECT_URI,
    tokenEncryptionKey: decodeBase64(vars.INSTAGRAM_TOKEN_ENCRYPTION_KEY)!,
    graphVersion: vars.INSTAGRAM_GRAPH_VERSION,
    scopes: vars.INSTAGRAM_SCOPES,
    webhookFields: vars.INSTAGRAM_WEBHOOK_FIELDS,
    configId: vars.INSTAGRAM_CONFIG_ID,
    stateTtlSeconds: vars.INSTAGRAM_STATE_TTL_SECONDS,
    allowedOrigins: vars.INSTAGRAM_ALLOWED_ORIGINS,
    metaTimeoutMs: vars.INSTAGRAM_META_TIMEOUT_MS,
    metaMaxRetries: vars.INSTAGRAM_META_MAX_RETRIES,
    callbackDeadlineMs: vars.INSTAGRAM_CALLBACK_DEADLINE_MS,
    dbTimeoutMs: vars.INSTAGRAM_DB_TIMEOUT_MS,
    graphBaseUrl: vars.INSTAGRAM_GRAPH_BASE_URL.replace(/\/+$/, ""),
    dialogBaseUrl: vars.INSTAGRAM_DIALOG_BASE_URL.replace(/\/+$/, ""),
    pkce: vars.INSTAGRAM_PKCE === "on",
    supabase: {
      url: vars.SUPABASE_URL.replace(/\/+$/, ""),
      secretKey: secretKey!,
      // As @supabase/server resolves it: inline keys win, then an explicit URL, then the project's own.
      jwks: vars.SUPABASE_JWKS ? parseJwks(vars.SUPABASE_JWKS)! : new URL(
        vars.SUPABASE_JWKS_URL ?? `${vars.SUPABASE_URL.replace(/\/+$/, "")}/auth/v1/.well-known/jwks.json`,
      ),
    },
  });
}

/**
 * The function's configuration, or, when it is invalid, one line per problem on stderr and exit code 1:
 * a configuration mistake is not a crash, so no stack trace. Supabase's edge runtime ignores
 * Deno.exit; there this returns undefined, and serveConfigured answers every request with a 503.
 */
export function loadConfigOrExit(functionName: string): Config | undefined {
  try {
    return loadConfig();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    for (const problem of error.problems) console.error(`${functionName}: configuration: ${problem}`);
    console.error(`${functionName}: cannot serve until the variables above are fixed (see .env.example).`);
    Deno.exit(1);
    return undefined;
  }
}

/** Standard or URL-safe base64, padded or not: the forms `openssl rand -base64 32` and tools produce. */
export function decodeBase64(value: string): Uint8Array<ArrayBuffer> | undefined {
  try {
    return Uint8Array.from(atob(value.replace(/-/g, "+").replace(/_/g, "/")), (char) => char.charCodeAt(0));
  } catch {
    return undefined;
  }
}

function parseKeyMap(value: string): Record<string, string> | undefined {
  try {
    const map = JSON.parse(value);
    const valid = map && typeof map === "object" && !Array.isArray(map) &&
      Object.values(map).every((key) => typeof key === "string" && key.length > 0);
    return valid ? map : undefined;
  } catch {
    return undefined;
  }
}

/** `{ keys: [...] }` or a bare array of keys, as @supabase/server accepts. */
function parseJwks(value: string): { keys: Record<string, unknown>[] } | undefined {
  try {
    const parsed = JSON.parse(value);
    const keys = Array.isArray(parsed) ? parsed : parsed?.keys;
    return Array.isArray(keys) && keys.every((key) => key && typeof key === "object") ? { keys } : undefined;
  } catch {
    return undefined;
  }
}

// Every setting the two functions read, validated once at start-up. A bad value stops the function
// with a message naming the variable; values are never echoed, since most of them are secrets.
import { z } from "zod";
import { resolveEnv } from "@supabase/server/core";

const LOOPBACK = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/;

/** https everywhere; plain http only for loopback, which is what local development uses. */
const webUrl = z.url({ protocol: /^https?$/ }).refine((value) => {
  const url = new URL(value);
  return url.protocol === "https:" || LOOPBACK.test(url.hostname);
}, "must be an https URL (http is accepted for localhost only)");

const commaList = z.string().transform((value) =>
  value.split(",").map((item) => item.trim()).filter(Boolean)
);

const scope = z.string().regex(/^[a-z_]{1,64}$/, "must be a comma-separated list of lower-case names");

const origin = z.string().refine((value) => {
  try {
    return new URL(value).origin === value;
  } catch {
    return false;
  }
}, "must be a comma-separated list of origins such as https://app.example.com");

const aes256Key = z.string().refine(
  (value) => decodeBase64(value)?.length === 32,
  "must be 32 random bytes in base64 (openssl rand -base64 32)",
);

const schema = z.object({
  INSTAGRAM_APP_ID: z.string().regex(/^\d{5,25}$/, "must be the numeric Meta app id"),
  INSTAGRAM_APP_SECRET: z.string().min(16, "must be the Meta app secret (App settings > Basic)"),
  INSTAGRAM_REDIRECT_URI: webUrl,
  INSTAGRAM_FRONTEND_REDIRECT_URI: webUrl.refine(
    (value) => !value.includes("#"),
    "must not contain a #fragment: the callback puts the pending connection's token there",
  ).optional(),
  INSTAGRAM_TOKEN_ENCRYPTION_KEY: aes256Key,
  INSTAGRAM_GRAPH_VERSION: z.string().regex(/^v\d{1,3}\.\d$/, "must look like v27.0").default("v27.0"),
  // Why each one: README, "Meta app set-up".
  INSTAGRAM_SCOPES: commaList.pipe(z.array(scope).min(1, "must name at least one permission")).default([
    "pages_show_list",
    "instagram_basic",
    "instagram_manage_messages",
    "pages_manage_metadata",
    "business_management",
  ]),
  // From "Webhook Events Reference" (Messenger Platform) for Instagram conversations; empty turns it off.
  INSTAGRAM_WEBHOOK_FIELDS: commaList.pipe(z.array(scope)).default([
    "messages",
    "messaging_postbacks",
    "messaging_seen",
    "message_reactions",
  ]),
  INSTAGRAM_CONFIG_ID: z.string().regex(
    /^\d{1,25}$/,
    "must be the numeric Facebook Login for Business configuration id",
  )
    .optional(),
  INSTAGRAM_STATE_TTL_SECONDS: z.coerce.number().int().min(60).max(3600).default(600),
  INSTAGRAM_ALLOWED_ORIGINS: commaList.pipe(z.array(origin)).default([]),
  INSTAGRAM_META_TIMEOUT_MS: z.coerce.number().int().min(50).max(60_000).default(8_000),
  INSTAGRAM_META_MAX_RETRIES: z.coerce.number().int().min(0).max(5).default(2),
  INSTAGRAM_CALLBACK_DEADLINE_MS: z.coerce.number().int().min(100).max(120_000).default(25_000),
  INSTAGRAM_DB_TIMEOUT_MS: z.coerce.number().int().min(50).max(60_000).default(5_000),
  INSTAGRAM_GRAPH_BASE_URL: webUrl.default("https://graph.facebook.com"),
  INSTAGRAM_DIALOG_BASE_URL: webUrl.default("https://www.facebook.com"),
  // On by default: see README, "PKCE". "off" only if Meta ever refuses the PKCE parameters.
  INSTAGRAM_PKCE: z.enum(["on", "off"], "must be on or off").default("on"),
  SUPABASE_URL: webUrl,
});

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
  /** What @supabase/server resolved from SUPABASE_* (plus the legacy key names), for its primitives. */
  supabase: Readonly<{
    url: string;
    secretKeys: Record<string, string>;
    publishableKeys: Record<string, string>;
    jwks: NonNullable<ReturnType<typeof resolveEnv>["data"]>["jwks"];
  }>;
}>;

export class ConfigError extends Error {
  override name = "ConfigError";
  constructor(readonly problems: string[]) {
    super(`Invalid configuration: ${problems.join("; ")}. See .env.example.`);
    // A stack trace adds nothing to a configuration message and buries it in the boot log.
    this.stack = `${this.name}: ${this.message}`;
  }
}

/**
 * Reads and validates the process environment (where @supabase/server also reads SUPABASE_*).
 * Empty variables count as unset, as in most .env tooling (except INSTAGRAM_WEBHOOK_FIELDS: empty = off).
 */
export function loadConfig(): Config {
  const env = Deno.env.toObject();
  const present = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== ""));
  // The one variable where empty means something: no webhook subscription at all.
  if (env.INSTAGRAM_WEBHOOK_FIELDS?.trim() === "") present.INSTAGRAM_WEBHOOK_FIELDS = "";
  const parsed = schema.safeParse(present);
  const problems = parsed.success ? [] : parsed.error.issues.map((issue) => {
    const name = String(issue.path[0]);
    return present[name] === undefined ? `${name} is required` : `${name} ${issue.message}`;
  });

  const supabase = resolveSupabase(present);
  if (!Object.keys(supabase.secretKeys).length) {
    problems.push("SUPABASE_SECRET_KEYS (or SUPABASE_SERVICE_ROLE_KEY) is required");
  }
  if (!Object.keys(supabase.publishableKeys).length) {
    problems.push("SUPABASE_PUBLISHABLE_KEYS (or SUPABASE_ANON_KEY) is required");
  }
  if (!supabase.jwks) {
    // @supabase/server falls back to SUPABASE_URL's JWKS endpoint; null means a malformed value.
    problems.push(
      "SUPABASE_JWKS or SUPABASE_JWKS_URL is malformed (JSON Web Key Set, or an https URL) and is required to verify sign-ins",
    );
  }
  if (!parsed.success || problems.length) throw new ConfigError(problems);

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
    supabase: { ...supabase, url: vars.SUPABASE_URL },
  });
}

/** @supabase/server's own resolution of SUPABASE_*, with the legacy single-key names as fallbacks. */
function resolveSupabase(env: Record<string, string>) {
  const { data } = resolveEnv({ url: env.SUPABASE_URL ?? "http://unset.invalid" });
  const legacy = (name: string): Record<string, string> => (env[name] ? { default: env[name] } : {});
  return {
    secretKeys: Object.keys(data?.secretKeys ?? {}).length
      ? data!.secretKeys
      : legacy("SUPABASE_SERVICE_ROLE_KEY"),
    publishableKeys: Object.keys(data?.publishableKeys ?? {}).length
      ? data!.publishableKeys
      : legacy("SUPABASE_ANON_KEY"),
    jwks: data?.jwks ?? null,
  };
}

/** Standard or URL-safe base64, padded or not: the forms `openssl rand -base64 32` and tools produce. */
export function decodeBase64(value: string): Uint8Array<ArrayBuffer> | undefined {
  try {
    return Uint8Array.from(atob(value.replace(/-/g, "+").replace(/_/g, "/")), (char) => char.charCodeAt(0));
  } catch {
    return undefined;
  }
}

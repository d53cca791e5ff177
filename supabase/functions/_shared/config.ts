// Every setting the functions read, each function validating only the parts it uses, once at start-up (zod/mini: the same validation as
// zod's classic API at a fortieth of the code to load). A bad value stops the function with one line
// per variable saying what it must be; values are never echoed, since most of them are secrets.
import * as z from "zod/mini";
import {
  DEFAULT_PAGE_WEBHOOK_FIELDS,
  INSTAGRAM_ONLY_FIELDS,
  isPageWebhookField,
} from "./meta/page_fields.ts";
import { LEGACY_KEY_ID, TOKEN_KEY_ID, type TokenKey } from "./crypto/page_token.ts";

/** A loopback host name (localhost, 127.x.x.x, [::1]). */
export const LOOPBACK = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/;

/** https everywhere; plain http only for loopback, which is what local development uses. */
function isWebUrl(value: string): boolean {
  if (!URL.canParse(value)) return false;
  const url = new URL(value);
  return url.protocol === "https:" || (url.protocol === "http:" && LOOPBACK.test(url.hostname));
}

const webUrl = z.string().check(z.refine(isWebUrl));
const APP_SECRET = /^[0-9a-f]{32}$|^\S{16,}$/;
const digits = (min: number, max: number) => z.string().check(z.regex(new RegExp(`^\\d{${min},${max}}$`)));
const integer = (min: number, max: number, fallback: number) =>
  z._default(z.coerce.number().check(z.int(), z.gte(min), z.lte(max)), fallback);
const NAME = /^[a-z_]{1,64}$/;
/** A comma-separated list, each item trimmed, empty items dropped. */
const splitList = (value: string) => value.split(",").map((item) => item.trim()).filter(Boolean);
const names = (
  fallback: string[],
  { allowEmpty, allowed = () => true }: { allowEmpty: boolean; allowed?: (item: string) => boolean },
) =>
  z._default(
    z.pipe(z.string(), z.transform(splitList)).check(
      z.refine((list) =>
        (allowEmpty || list.length > 0) && list.every((item) => NAME.test(item) && allowed(item))
      ),
    ),
    fallback,
  );

/**
 * Why INSTAGRAM_WEBHOOK_FIELDS was refused. A field name is no secret, so the first one that is not a
 * Page field is named (only once it looks like a field name: nothing else of the value is echoed).
 */
function explainWebhookFields(value: string): string {
  const items = splitList(value);
  if (!items.every((item) => NAME.test(item))) {
    return "must be a comma-separated list of Page webhook field names (or empty for none)";
  }
  const bad = items.find((item) => !isPageWebhookField(item))!;
  const why = INSTAGRAM_ONLY_FIELDS.includes(bad)
    ? `${bad} is an Instagram field, chosen in the App Dashboard`
    : `${bad} is not a Page webhook field`;
  return `must be Page webhook fields (POST /{page-id}/subscribed_apps; see README, Meta app set-up): ${why}`;
}
/** Where the rotation procedure is, for the messages about the token keys. */
const ROTATION = "README, Rotating the token encryption key";

/**
 * INSTAGRAM_TOKEN_ENCRYPTION_KEYS: `id:base64key` pairs, primary first, or why not. The message names
 * a pair by its position, or by its id once the id is valid (an id is no secret); never a key.
 */
export function parseTokenKeys(value: string): { keys: TokenKey[] } | { problem: string } {
  const pairs = splitList(value);
  if (pairs.length === 0) {
    return { problem: `must be comma-separated id:base64key pairs, primary first (${ROTATION})` };
  }
  const keys: TokenKey[] = [];
  for (const [index, pair] of pairs.entries()) {
    const colon = pair.indexOf(":");
    const id = pair.slice(0, Math.max(colon, 0)).trim();
    if (colon < 0 || !TOKEN_KEY_ID.test(id)) {
      return {
        problem: `must be comma-separated id:base64key pairs, primary first: pair ${
          index + 1
        } does not start with a key id (1 to 32 of a-z, 0-9, _ and -, first a letter or digit) and a colon`,
      };
    }
    if (keys.some((key) => key.id === id)) {
      return { problem: `must name each key once: ${id} is listed twice` };
    }
    const key = decodeBase64(pair.slice(colon + 1).trim());
    if (key?.length !== 32) {
      return {
        problem:
          `must give each key as 32 random bytes in base64 (openssl rand -base64 32): the key of ${id} is not`,
      };
    }
    keys.push({ id, key });
  }
  return { keys };
}

/**
 * INSTAGRAM_DELETION_STATUS_URL: an https page (Meta's user opens it in a browser) with `{code}` where
 * the confirmation code goes, outside the host: https://app.example.com/data-deletion?code={code}.
 */
function isDeletionStatusUrl(value: string): boolean {
  if (!value.includes("{code}")) return false;
  const [a, b] = ["a", "b"].map((code) => value.replaceAll("{code}", code));
  if (!URL.canParse(a) || !URL.canParse(b)) return false;
  return new URL(a).protocol === "https:" && new URL(a).host === new URL(b).host;
}

/** Who counts as a doctor (INSTAGRAM_DOCTOR_CLAIM): a claim in the user's app_metadata and its value. */
export interface DoctorClaim {
  /** The keys under app_metadata, outermost first. */
  path: string[];
  value: string;
}

// app_metadata only: Supabase Auth lets a user change their own user_metadata, but app_metadata only
// through the service role. Up to four keys deep; the value is printable ASCII without spaces.
const DOCTOR_CLAIM = /^app_metadata((?:\.[A-Za-z0-9_-]{1,64}){1,4})=([\x21-\x7e]{1,128})$/;

/** `app_metadata.role=doctor` as { path: ["role"], value: "doctor" }; undefined when malformed. */
export function parseDoctorClaim(value: string): DoctorClaim | undefined {
  const match = DOCTOR_CLAIM.exec(value.trim());
  return match ? { path: match[1].slice(1).split("."), value: match[2] } : undefined;
}

/** A name in SUPABASE_SECRET_KEYS's map, as INSTAGRAM_MAINTENANCE_KEY_NAME may give it. */
const SECRET_KEY_NAME = /^[A-Za-z0-9_-]{1,64}$/;

const origins = z._default(
  z.pipe(z.string(), z.transform(splitList))
    .check(z.refine((list) => list.every((item) => URL.canParse(item) && new URL(item).origin === item))),
  [],
);

// Each variable: its schema, and what it must be (the whole message when its value is refused; a
// function of the value only where the value is no secret).
const VARIABLES = {
  // The Facebook Login app (the Page path) and the Instagram Login app (no Page): each optional, at least
  // one complete (checkApps). "Your app can either use Facebook Login or Instagram Login but not both"
  // ("Instagram Platform App Review"): two apps, two ids, two secrets.
  INSTAGRAM_APP_ID: [z.optional(digits(5, 25)), "must be the numeric Meta app id (App settings > Basic)"],
  INSTAGRAM_APP_SECRET: [
    z.optional(z.string().check(z.regex(APP_SECRET))),
    "must be the Meta app secret (App settings > Basic)",
  ],
  INSTAGRAM_LOGIN_APP_ID: [
    z.optional(digits(5, 25)),
    "must be the numeric Instagram app id (App Dashboard > Instagram > API setup with Instagram login)",
  ],
  INSTAGRAM_LOGIN_APP_SECRET: [
    z.optional(z.string().check(z.regex(APP_SECRET))),
    "must be the Instagram app secret (App Dashboard > Instagram > API setup with Instagram login)",
  ],
  // "Business Login for Instagram": the two permissions messaging needs.
  INSTAGRAM_LOGIN_SCOPES: [
    names(["instagram_business_basic", "instagram_business_manage_messages"], { allowEmpty: false }),
    "must be a comma-separated list of Instagram permission names (at least one)",
  ],
  // Unset: INSTAGRAM_REDIRECT_URI (one callback serves both paths; the state says which one started).
  INSTAGRAM_LOGIN_REDIRECT_URI: [
    z.optional(webUrl.check(z.refine((value) => !value.includes("#")))),
    "must be an https URL (http only for localhost) without a #fragment, the callback's address",
  ],
  // Instagram fields of POST /me/subscribed_apps on graph.instagram.com ("Instagram API with Instagram
  // Login", Webhooks: messages, messaging_seen, message_reactions, messaging_postbacks, ...).
  INSTAGRAM_LOGIN_WEBHOOK_FIELDS: [
    names(["messages", "messaging_seen", "message_reactions", "messaging_postbacks"], { allowEmpty: true }),
    "must be a comma-separated list of Instagram webhook field names (or empty for none)",
  ],
  INSTAGRAM_LOGIN_DIALOG_BASE_URL: [
    z._default(webUrl, "https://www.instagram.com"),
    "must be an https URL (http only for localhost)",
  ],
  INSTAGRAM_LOGIN_API_BASE_URL: [
    z._default(webUrl, "https://api.instagram.com"),
    "must be an https URL (http only for localhost)",
  ],
  INSTAGRAM_LOGIN_GRAPH_BASE_URL: [
    z._default(webUrl, "https://graph.instagram.com"),
    "must be an https URL (http only for localhost)",
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
  // The key ring of stored Page tokens (crypto/page_token.ts), primary first; either variable, not both.
  INSTAGRAM_TOKEN_ENCRYPTION_KEYS: [
    z.optional(z.string().check(z.refine((value) => "keys" in parseTokenKeys(value)))),
    (value: string) => (parseTokenKeys(value) as { problem: string }).problem,
  ],
  // The single key of before rotation: a ring of one key, whose id is `legacy`.
  INSTAGRAM_TOKEN_ENCRYPTION_KEY: [
    z.optional(z.string().check(z.refine((value) => decodeBase64(value)?.length === 32))),
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
  // Page fields only (meta/page_fields.ts: Meta's list and the docs the default comes from, "Webhooks for
  // Instagram Messaging" and "Page Subscribed Apps"); empty turns the subscription off.
  INSTAGRAM_WEBHOOK_FIELDS: [
    names([...DEFAULT_PAGE_WEBHOOK_FIELDS], { allowEmpty: true, allowed: isPageWebhookField }),
    explainWebhookFields,
  ],
  // Meta sends it back at the webhook's verification handshake: a shared secret, not a password.
  INSTAGRAM_WEBHOOK_VERIFY_TOKEN: [
    z.string().check(z.regex(/^[\x21-\x7e]{16,256}$/)),
    "must be 16 to 256 printable characters without spaces: the Verify Token of the app's Webhooks settings (openssl rand -hex 24)",
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
  // Meta's Data Deletion Request callback answers this as the status URL (README, Data deletion status).
  INSTAGRAM_DELETION_STATUS_URL: [
    z.optional(z.string().check(z.refine(isDeletionStatusUrl))),
    "must be an https URL with {code} where the confirmation code goes, such as https://app.example.com/data-deletion?code={code}",
  ],
  // Named by the plain-text status (and nowhere else): who held the data.
  INSTAGRAM_SERVICE_NAME: [
    z._default(z.string().check(z.regex(/^(?=.*\S)\P{Cc}{1,80}$/u)), "Instagram connect for doctors"),
    "must be 1 to 80 characters on one line: the service's name as the people who use it know it",
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
  // instagram-maintenance: which of SUPABASE_SECRET_KEYS its caller must present (README, "Keeping links
  // alive"); a named key can be rotated without touching other services.
  INSTAGRAM_MAINTENANCE_KEY_NAME: [
    z._default(z.string().check(z.regex(SECRET_KEY_NAME)), "default"),
    "must be the name of a key in SUPABASE_SECRET_KEYS (letters, digits, _ or -)",
  ],
  INSTAGRAM_MAINTENANCE_BATCH: [integer(1, 50, 50), "must be a whole number of links from 1 to 50"],
  INSTAGRAM_EVENT_RETENTION_DAYS: [integer(1, 3650, 90), "must be a whole number of days from 1 to 3650"],
  // Unset: any signed-in user counts as a doctor (README, Who counts as a doctor).
  INSTAGRAM_DOCTOR_CLAIM: [
    z.optional(z.string().check(z.refine((value) => parseDoctorClaim(value) !== undefined))),
    "must be app_metadata.<key>=<value>, such as app_metadata.role=doctor (keys of letters, digits, _ or -, dot-separated, up to 4 deep; a value without spaces)",
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

type Variables = { [K in keyof typeof VARIABLES]: z.output<(typeof VARIABLES)[K][0]> };
type VariableName = keyof Variables;

/**
 * A part of the configuration: the variables it reads, what it makes of them once they are valid, and
 * (`check`) a problem spanning several of them, given the variables that are set.
 */
function part<const N extends VariableName, R>(
  names: readonly N[],
  build: (vars: Pick<Variables, N>, env: Record<string, string>) => R,
  check?: (present: Record<string, string>) => string | string[] | undefined,
) {
  return { names, build, check };
}

const trimSlash = (url: string) => url.replace(/\/+$/, "");

const APPS = [
  { app: "the Facebook Login app", names: ["INSTAGRAM_APP_ID", "INSTAGRAM_APP_SECRET"] },
  { app: "the Instagram Login app", names: ["INSTAGRAM_LOGIN_APP_ID", "INSTAGRAM_LOGIN_APP_SECRET"] },
] as const;

/**
 * Either path alone: at least one complete app (id and secret), and no app half-configured. A problem
 * names the missing variable, never a value.
 */
function checkApps(present: Record<string, string>): string[] {
  const problems: string[] = [];
  let complete = 0;
  for (const { app, names } of APPS) {
    const missing = names.filter((name) => present[name] === undefined);
    if (missing.length === 0) complete++;
    if (missing.length === 1) {
      problems.push(
        `${missing[0]} is required: ${
          names.find((name) => name !== missing[0])
        } is set, and ${app} needs both`,
      );
    }
  }
  if (complete === 0 && problems.length === 0) {
    problems.push(
      "INSTAGRAM_APP_ID is required: set INSTAGRAM_APP_ID and INSTAGRAM_APP_SECRET (Facebook Login, the Page path), " +
        "INSTAGRAM_LOGIN_APP_ID and INSTAGRAM_LOGIN_APP_SECRET (Instagram Login), or both",
    );
  }
  return problems;
}

// Each function names the parts it uses (serveConfigured), and only their variables are validated:
// a function that needs one secret does not fail for lack of another.
const PARTS = {
  /**
   * Meta's Graph API, called as the app: the app secret signs every call (appsecret_proof). `facebook`:
   * the Facebook Login app, undefined when only Instagram Login is configured (its calls then fail with
   * login_path_not_configured). The transport settings serve both paths.
   */
  meta: part([
    "INSTAGRAM_APP_ID",
    "INSTAGRAM_APP_SECRET",
    "INSTAGRAM_GRAPH_VERSION",
    "INSTAGRAM_GRAPH_BASE_URL",
    "INSTAGRAM_META_TIMEOUT_MS",
    "INSTAGRAM_META_MAX_RETRIES",
    "INSTAGRAM_CALLBACK_DEADLINE_MS",
  ], (vars) => ({
    facebook: vars.INSTAGRAM_APP_ID && vars.INSTAGRAM_APP_SECRET
      ? Object.freeze({ appId: vars.INSTAGRAM_APP_ID, appSecret: vars.INSTAGRAM_APP_SECRET })
      : undefined,
    graphVersion: vars.INSTAGRAM_GRAPH_VERSION,
    graphBaseUrl: trimSlash(vars.INSTAGRAM_GRAPH_BASE_URL),
    /** Per Graph call. */
    callTimeoutMs: vars.INSTAGRAM_META_TIMEOUT_MS,
    /** Transient failures only. */
    maxRetries: vars.INSTAGRAM_META_MAX_RETRIES,
    /** All Meta calls of one request (callback, finish, disconnect). */
    requestDeadlineMs: vars.INSTAGRAM_CALLBACK_DEADLINE_MS,
  }), checkApps),
  /**
   * Business Login for Instagram (no Facebook Page): its own app, dialog, token and Graph hosts.
   * Undefined when INSTAGRAM_LOGIN_APP_ID and INSTAGRAM_LOGIN_APP_SECRET are not both set.
   */
  instagramLogin: part([
    "INSTAGRAM_LOGIN_APP_ID",
    "INSTAGRAM_LOGIN_APP_SECRET",
    "INSTAGRAM_LOGIN_SCOPES",
    "INSTAGRAM_LOGIN_REDIRECT_URI",
    "INSTAGRAM_LOGIN_WEBHOOK_FIELDS",
    "INSTAGRAM_LOGIN_DIALOG_BASE_URL",
    "INSTAGRAM_LOGIN_API_BASE_URL",
    "INSTAGRAM_LOGIN_GRAPH_BASE_URL",
  ], (vars, env) =>
    vars.INSTAGRAM_LOGIN_APP_ID && vars.INSTAGRAM_LOGIN_APP_SECRET
      ? {
        appId: vars.INSTAGRAM_LOGIN_APP_ID,
        appSecret: vars.INSTAGRAM_LOGIN_APP_SECRET,
        scopes: vars.INSTAGRAM_LOGIN_SCOPES,
        redirectUri: vars.INSTAGRAM_LOGIN_REDIRECT_URI ?? env.INSTAGRAM_REDIRECT_URI,
        webhookFields: vars.INSTAGRAM_LOGIN_WEBHOOK_FIELDS,
        dialogBaseUrl: trimSlash(vars.INSTAGRAM_LOGIN_DIALOG_BASE_URL),
        apiBaseUrl: trimSlash(vars.INSTAGRAM_LOGIN_API_BASE_URL),
        graphBaseUrl: trimSlash(vars.INSTAGRAM_LOGIN_GRAPH_BASE_URL),
      }
      : undefined, (present) => {
    const problems = [checkApps(present)].flat().filter((problem) => problem !== undefined);
    const complete = present.INSTAGRAM_LOGIN_APP_ID !== undefined &&
      present.INSTAGRAM_LOGIN_APP_SECRET !== undefined;
    const fallback = present.INSTAGRAM_REDIRECT_URI;
    if (
      complete && present.INSTAGRAM_LOGIN_REDIRECT_URI === undefined &&
      !(fallback !== undefined && isWebUrl(fallback) && !fallback.includes("#"))
    ) {
      problems.push(
        "INSTAGRAM_LOGIN_REDIRECT_URI is required (or a valid INSTAGRAM_REDIRECT_URI, which it defaults to): the callback's address for Instagram Login",
      );
    }
    return problems;
  }),
  /** Meta's login dialog and its return: the OAuth client this project is. */
  login: part([
    "INSTAGRAM_REDIRECT_URI",
    "INSTAGRAM_FRONTEND_REDIRECT_URI",
    "INSTAGRAM_SCOPES",
    "INSTAGRAM_CONFIG_ID",
    "INSTAGRAM_PKCE",
    "INSTAGRAM_STATE_TTL_SECONDS",
    "INSTAGRAM_DIALOG_BASE_URL",
  ], (vars) => ({
    redirectUri: vars.INSTAGRAM_REDIRECT_URI,
    frontendRedirectUri: vars.INSTAGRAM_FRONTEND_REDIRECT_URI,
    scopes: vars.INSTAGRAM_SCOPES,
    configId: vars.INSTAGRAM_CONFIG_ID,
    /** Send a PKCE challenge with the dialog and the verifier with the code exchange. */
    pkce: vars.INSTAGRAM_PKCE === "on",
    stateTtlSeconds: vars.INSTAGRAM_STATE_TTL_SECONDS,
    dialogBaseUrl: trimSlash(vars.INSTAGRAM_DIALOG_BASE_URL),
  })),
  /** The AES-GCM keys of stored Page tokens, primary first (crypto/page_token.ts: importTokenKeyring). */
  tokens: part(
    ["INSTAGRAM_TOKEN_ENCRYPTION_KEYS", "INSTAGRAM_TOKEN_ENCRYPTION_KEY"],
    (vars) => ({
      keys: vars.INSTAGRAM_TOKEN_ENCRYPTION_KEYS === undefined
        ? [{ id: LEGACY_KEY_ID, key: decodeBase64(vars.INSTAGRAM_TOKEN_ENCRYPTION_KEY!)! }]
        : (parseTokenKeys(vars.INSTAGRAM_TOKEN_ENCRYPTION_KEYS) as { keys: TokenKey[] }).keys,
    }),
    (present) => {
      const [ring, single] = [
        present.INSTAGRAM_TOKEN_ENCRYPTION_KEYS,
        present.INSTAGRAM_TOKEN_ENCRYPTION_KEY,
      ];
      if (ring === undefined && single === undefined) {
        return "INSTAGRAM_TOKEN_ENCRYPTION_KEYS is required (id:base64key pairs, primary first; " +
          "the single INSTAGRAM_TOKEN_ENCRYPTION_KEY of older set-ups also works)";
      }
      if (ring !== undefined && single !== undefined) {
        return "INSTAGRAM_TOKEN_ENCRYPTION_KEY and INSTAGRAM_TOKEN_ENCRYPTION_KEYS are both set: keep one " +
          `(to move, list the old key as legacy:<key> in INSTAGRAM_TOKEN_ENCRYPTION_KEYS; ${ROTATION})`;
      }
    },
  ),
  /** What each linked Page is subscribed to; empty: no subscription. */
  webhooks: part(["INSTAGRAM_WEBHOOK_FIELDS"], (vars) => ({ pageFields: vars.INSTAGRAM_WEBHOOK_FIELDS })),
  /**
   * What Meta's webhook deliveries are checked with: the verify token and the signing app's secret
   * (`appSecret`: the Facebook app's; `instagramAppSecret`: the Instagram Login app's; either may be
   * undefined, not both), and the retention, past which an entry is a replay of purged events.
   */
  receiver: part(
    [
      "INSTAGRAM_APP_SECRET",
      "INSTAGRAM_LOGIN_APP_SECRET",
      "INSTAGRAM_WEBHOOK_VERIFY_TOKEN",
      "INSTAGRAM_EVENT_RETENTION_DAYS",
    ],
    (vars) => ({
      appSecret: vars.INSTAGRAM_APP_SECRET,
      instagramAppSecret: vars.INSTAGRAM_LOGIN_APP_SECRET,
      verifyToken: vars.INSTAGRAM_WEBHOOK_VERIFY_TOKEN,
      eventRetentionDays: vars.INSTAGRAM_EVENT_RETENTION_DAYS,
    }),
    // It signs nothing and calls no one: a secret (of either app) is all it needs of an app. Without
    // one, the same problem as the `meta` part's (one line when a function loads both).
    (present) =>
      present.INSTAGRAM_APP_SECRET === undefined && present.INSTAGRAM_LOGIN_APP_SECRET === undefined
        ? (present.INSTAGRAM_APP_ID ?? present.INSTAGRAM_LOGIN_APP_ID) === undefined
          ? "INSTAGRAM_APP_SECRET is required (or INSTAGRAM_LOGIN_APP_SECRET, with Instagram Login alone)"
          : checkApps(present)
        : undefined,
  ),
  /** Browser origins allowed to call the function (the dashboard). */
  cors: part(["INSTAGRAM_ALLOWED_ORIGINS"], (vars) => ({ allowedOrigins: vars.INSTAGRAM_ALLOWED_ORIGINS })),
  /** The Data API with the project's secret key (service_role): the functions' RPCs. */
  database: part(["SUPABASE_URL", "SUPABASE_SECRET_KEYS", "INSTAGRAM_DB_TIMEOUT_MS"], (vars, env) => ({
    url: trimSlash(vars.SUPABASE_URL),
    secretKey: secretKeyOf(env)!,
    timeoutMs: vars.INSTAGRAM_DB_TIMEOUT_MS,
  })),
  /** instagram-maintenance: the secret key its caller must present, and what one run does. */
  maintenance: part([
    "SUPABASE_SECRET_KEYS",
    "INSTAGRAM_MAINTENANCE_KEY_NAME",
    "INSTAGRAM_MAINTENANCE_BATCH",
    "INSTAGRAM_EVENT_RETENTION_DAYS",
  ], (vars, env) => ({
    /** Every secret key by name, as @supabase/server's `secret` auth mode matches them. */
    secretKeys: secretKeyMap(env),
    keyName: vars.INSTAGRAM_MAINTENANCE_KEY_NAME,
    /** Links checked, and tokens re-encrypted, per run. */
    batch: vars.INSTAGRAM_MAINTENANCE_BATCH,
    eventRetentionDays: vars.INSTAGRAM_EVENT_RETENTION_DAYS,
  }), (present) => {
    // Key names are no secret; the keys themselves are never named.
    const keyName = present.INSTAGRAM_MAINTENANCE_KEY_NAME ?? "default";
    const keys = secretKeyMap(present);
    if (Object.keys(keys).length > 0 && !Object.hasOwn(keys, keyName)) {
      return `INSTAGRAM_MAINTENANCE_KEY_NAME: SUPABASE_SECRET_KEYS has no key named ${
        SECRET_KEY_NAME.test(keyName) ? keyName : "so"
      } (its keys: ${Object.keys(keys).join(", ")})`;
    }
  }),
  /** Where the data deletion status is read: a page of the app's own, or (unset) the callback's. */
  deletion: part(["INSTAGRAM_DELETION_STATUS_URL", "INSTAGRAM_SERVICE_NAME"], (vars) => ({
    /** With `{code}` where the confirmation code goes; undefined: the callback's own status URL. */
    statusUrl: vars.INSTAGRAM_DELETION_STATUS_URL,
    serviceName: vars.INSTAGRAM_SERVICE_NAME.trim(),
  })),
  /**
   * Where doctors' session tokens are verified (inline keys, or the project's JWKS endpoint), and who
   * among the signed-in users counts as a doctor (undefined: everyone).
   */
  sessions: part(
    ["SUPABASE_URL", "SUPABASE_JWKS", "SUPABASE_JWKS_URL", "INSTAGRAM_DOCTOR_CLAIM"],
    (vars) => ({
      doctorClaim: vars.INSTAGRAM_DOCTOR_CLAIM === undefined
        ? undefined
        : parseDoctorClaim(vars.INSTAGRAM_DOCTOR_CLAIM),
      // As @supabase/server resolves it: inline keys win, then an explicit URL, then the project's own.
      jwks: (vars.SUPABASE_JWKS ? parseJwks(vars.SUPABASE_JWKS)! : new URL(
        vars.SUPABASE_JWKS_URL ?? `${trimSlash(vars.SUPABASE_URL)}/auth/v1/.well-known/jwks.json`,
      )) as Jwks,
    }),
  ),
};

export type ConfigPart = keyof typeof PARTS;
export const CONFIG_PARTS = Object.keys(PARTS) as [ConfigPart, ...ConfigPart[]];

export type Jwks = { keys: Record<string, unknown>[] } | URL;

/** The parts `P` of the configuration, each read-only: `config.meta.appId`, `config.database.url`. */
export type Config<P extends ConfigPart = ConfigPart> = {
  readonly [K in P]: Readonly<ReturnType<(typeof PARTS)[K]["build"]>>;
};

/**
 * The secret the OAuth state's keys (and the callback's other derived keys) come from: the Facebook app's
 * when it is configured, else the Instagram Login app's (each under its own HKDF labels, as before).
 */
export function primaryAppSecret(config: Config<"meta" | "instagramLogin">): string {
  const secret = config.meta.facebook?.appSecret ?? config.instagramLogin?.appSecret;
  // checkApps refuses a configuration without either at load time.
  if (secret === undefined) {
    throw new TypeError("neither the Facebook nor the Instagram Login app is configured");
  }
  return secret;
}

export class ConfigError extends Error {
  override name = "ConfigError";
  constructor(readonly problems: string[]) {
    super(`Invalid configuration: ${problems.join("; ")}. See .env.example.`);
  }
}

/**
 * Reads and validates the variables of `parts` (and no others) from the environment. Empty variables
 * count as unset, as in most .env tooling, except INSTAGRAM_WEBHOOK_FIELDS and
 * INSTAGRAM_LOGIN_WEBHOOK_FIELDS, where empty means no subscription. The legacy key names (SUPABASE_SERVICE_ROLE_KEY, SUPABASE_SECRET_KEY) stand in for
 * SUPABASE_SECRET_KEYS.
 */
export function loadConfig<P extends ConfigPart>(
  // At least one part, named in a literal: a widened ConfigPart[] would type as every part and load none.
  parts: readonly [P, ...P[]],
  env: Record<string, string> = Deno.env.toObject(),
): Config<P> {
  // In the order of VARIABLES (and .env.example), whatever the parts' order, so problems read as a list.
  const wanted = new Set<VariableName>(parts.flatMap((name) => PARTS[name].names));
  const names = (Object.keys(VARIABLES) as VariableName[]).filter((name) => wanted.has(name));
  const present = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== ""));
  for (const name of ["INSTAGRAM_WEBHOOK_FIELDS", "INSTAGRAM_LOGIN_WEBHOOK_FIELDS"]) {
    if (env[name]?.trim() === "") present[name] = "";
  }
  const schema = z.object(Object.fromEntries(names.map((name) => [name, VARIABLES[name][0]])));
  const parsed = schema.safeParse(present);
  const problems = parsed.success
    ? []
    : [...new Set(parsed.error.issues.map((issue) => String(issue.path[0]) as VariableName))]
      .map((name) =>
        present[name] === undefined ? `${name} is required` : `${name} ${explain(name, present[name])}`
      );
  if (
    names.includes("SUPABASE_SECRET_KEYS") && !secretKeyOf(present) &&
    present.SUPABASE_SECRET_KEYS === undefined
  ) {
    problems.push(
      "SUPABASE_SECRET_KEYS is required (provided by Supabase; SUPABASE_SERVICE_ROLE_KEY also works)",
    );
  }
  for (const problem of new Set(parts.flatMap((name) => PARTS[name].check?.(present) ?? []))) {
    if (problem) problems.push(problem);
  }
  if (problems.length || !parsed.success) throw new ConfigError(problems);

  const vars = parsed.data as Variables;
  const build = (name: P) => (PARTS[name].build as (vars: Variables, env: Record<string, string>) => object);
  return Object.freeze(
    Object.fromEntries(parts.map((name) => [name, Object.freeze(build(name)(vars, present))])),
  ) as Config<P>;
}

function explain(name: VariableName, value: string): string {
  const what: string | ((value: string) => string) = VARIABLES[name][1];
  return typeof what === "function" ? what(value) : what;
}

/**
 * The function's configuration, or, when it is invalid, one line per problem on stderr and exit code 1:
 * a configuration mistake is not a crash, so no stack trace. Supabase's edge runtime ignores
 * Deno.exit; there this returns undefined, and serveConfigured answers every request with a 503.
 */
export function loadConfigOrExit<P extends ConfigPart>(
  functionName: string,
  parts: readonly [P, ...P[]],
): Config<P> | undefined {
  try {
    return loadConfig(parts);
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

/**
 * The Data API key: the `default` key of secretKeyMap, else its first. `default` first, as
 * @supabase/server's admin client picks it: a key of its own for a job (INSTAGRAM_MAINTENANCE_KEY_NAME)
 * may then be revoked without cutting the functions off the database.
 */
function secretKeyOf(env: Record<string, string>): string | undefined {
  const map = secretKeyMap(env);
  return map.default ?? Object.values(map)[0];
}

/** SUPABASE_SECRET_KEYS by name; a single legacy key counts as `default`, as @supabase/server reads them. */
function secretKeyMap(env: Record<string, string>): Record<string, string> {
  if (env.SUPABASE_SECRET_KEYS) return parseKeyMap(env.SUPABASE_SECRET_KEYS) ?? {};
  const single = env.SUPABASE_SECRET_KEY ?? env.SUPABASE_SERVICE_ROLE_KEY;
  return Object.assign(Object.create(null), single ? { default: single } : {});
}

function parseKeyMap(value: string): Record<string, string> | undefined {
  try {
    const map = JSON.parse(value);
    const valid = map && typeof map === "object" && !Array.isArray(map) &&
      Object.values(map).every((key) => typeof key === "string" && key.length > 0);
    // Without a prototype: a name such as "constructor" must find no key, never Object's own function.
    return valid ? Object.assign(Object.create(null), map) : undefined;
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

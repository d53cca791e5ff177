// `deno task preflight [--json-answers] [--scope-login] [--env-file <path>]`: checks the deploy
// configuration before `supabase secrets set`, and prints what to paste into the Meta App Dashboard.
// It reads supabase/functions/.env (or --env-file), the environment's INSTAGRAM_* and SUPABASE_*
// variables (the file's values win, as in `deno task dev`), and the project ref: the one `supabase link`
// wrote to supabase/.temp/project-ref (where the Supabase CLI keeps it: ProjectRefPath in its
// internal/utils/misc.go), else SUPABASE_URL's. One line per problem, naming variables, never printing
// a value (only the ref, URLs made from it, the dashboard's origin and webhook field names); exit 1 on
// any problem, 2 on a mistake in the command line, 0 when every check passes.
// Two Meta apps, either alone ("Your app can either use Facebook Login or Instagram Login but not both",
// Meta's "Instagram Platform App Review"): the Facebook Login app (INSTAGRAM_APP_ID/SECRET, the Page
// path) and the Instagram Login app (INSTAGRAM_LOGIN_APP_ID/SECRET, no Page). Each configured app gets
// its own block of dashboard values; config.ts refuses an app with one of its two variables.
// Paths are the current directory's, which `deno task` makes the project root. For tests only,
// PREFLIGHT_JWKS_URL replaces https://<ref>.supabase.co/auth/v1/.well-known/jwks.json.
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { type Config, CONFIG_PARTS, ConfigError, loadConfig } from "../supabase/functions/_shared/config.ts";
import { readDotEnv } from "./lib/dot_env.ts";

const USAGE = "usage: deno task preflight [--json-answers] [--scope-login] [--env-file <path>]";
const LINK_FILE = "supabase/.temp/project-ref";
/** A hosted project's ref, as the Supabase CLI checks it ("Must be like `abcdefghijklmnopqrst`"). */
const REF = /^[a-z]{20}$/;
const REF_OF_URL = /^https:\/\/([a-z]{20})\.supabase\.co\/?$/;

let flags: { "json-answers"?: boolean; "scope-login"?: boolean; "env-file"?: string };
try {
  flags = parseArgs({
    args: Deno.args,
    options: {
      "json-answers": { type: "boolean" },
      "scope-login": { type: "boolean" },
      "env-file": { type: "string" },
    },
  }).values;
} catch (error) {
  console.error(`deno task preflight: ${(error as Error).message}\n${USAGE}`);
  Deno.exit(2);
}

const envFile = flags["env-file"] ?? "supabase/functions/.env";
// A path on the command line is the shell's (`deno task` keeps its directory in INIT_CWD).
const file = await readDotEnv(resolve(Deno.env.get("INIT_CWD") ?? Deno.cwd(), envFile));
const settings: Record<string, string> = {
  ...pick(Deno.env.toObject(), /^(SUPABASE|INSTAGRAM)_/),
  ...file.values,
};
/** A variable's value; empty counts as unset, as config.ts reads it. */
const value = (name: string) => settings[name] || undefined;
const problems: string[] = [];
if (!file.found) problems.push(`there is no ${envFile} (cp .env.example ${envFile}, then fill it in)`);
// `supabase secrets set --env-file` uploads the file only: a value set only in this shell would pass
// here and be missing from the deployed functions.
for (const name of Object.keys(pick(Deno.env.toObject(), /^INSTAGRAM_/))) {
  if (file.found && !Object.hasOwn(file.values, name)) {
    problems.push(
      `${name} is set only in your environment: secrets set --env-file uploads ${envFile} alone; put it there`,
    );
  }
}

const { ref, from } = await projectRef();
const project = ref ? `https://${ref}.supabase.co` : undefined;
const redirectUri = project && `${project}/functions/v1/instagram-callback`;

// Every variable, as the functions validate them, with SUPABASE_* as the platform provides them:
// `secrets set` skips those names ("Env name cannot start with SUPABASE_, skipping"). The project's
// secret keys only Supabase holds: a stand-in under the names the functions look for lets the rest
// be checked (whether the project has a key named INSTAGRAM_MAINTENANCE_KEY_NAME is not).
const keyName = value("INSTAGRAM_MAINTENANCE_KEY_NAME") ?? "default";
let config: Config | undefined;
try {
  config = loadConfig(CONFIG_PARTS, {
    ...pick(settings, /^INSTAGRAM_/),
    SUPABASE_URL: project ?? "https://project-ref.supabase.co",
    SUPABASE_SECRET_KEYS: JSON.stringify({ default: "stand-in", [keyName]: "stand-in" }),
  });
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  problems.push(...error.problems);
}
/** Whether a line above is already about this variable: each is reported once. */
const reported = (name: string) => problems.some((line) => line.startsWith(`${name} `));
const usable = (name: string) => value(name) !== undefined && !reported(name);

// Which app's values to print: the ones being configured (both while neither is).
const facebookApp = value("INSTAGRAM_APP_ID") !== undefined || value("INSTAGRAM_APP_SECRET") !== undefined;
const instagramApp = value("INSTAGRAM_LOGIN_APP_ID") !== undefined ||
  value("INSTAGRAM_LOGIN_APP_SECRET") !== undefined;
const neither = !facebookApp && !instagramApp;

// One callback serves both paths (the signed state says which one started): INSTAGRAM_LOGIN_REDIRECT_URI,
// when set, must be the same address, registered in the Instagram app's business login settings.
for (const name of ["INSTAGRAM_REDIRECT_URI", "INSTAGRAM_LOGIN_REDIRECT_URI"]) {
  if (project && usable(name) && value(name) !== redirectUri) {
    problems.push(
      `${name} must be ${redirectUri}, this project's instagram-callback ` +
        "(Meta compares it character for character)",
    );
  }
}
checkDashboard();
// Facebook Login's configuration, once that app is there (half an app is already a problem above).
if (value("INSTAGRAM_APP_ID") !== undefined && value("INSTAGRAM_APP_SECRET") !== undefined) checkLogin();

const jwks = project
  ? await checkJwks(Deno.env.get("PREFLIGHT_JWKS_URL") ?? `${project}/auth/v1/.well-known/jwks.json`)
  : undefined;
if (jwks?.problem) problems.push(jwks.problem);

console.log(`deno task preflight: ${envFile} and the environment, for project ${ref ?? "(unknown)"}${from}`);
if (project) {
  const token = file.values.INSTAGRAM_WEBHOOK_VERIFY_TOKEN
    ? envFile
    : value("INSTAGRAM_WEBHOOK_VERIFY_TOKEN")
    ? "your environment"
    : `${envFile} (not set yet)`;
  const webhook = `${project}/functions/v1/instagram-webhook`;
  // The routes of instagram-callback/index.ts and instagram-webhook/index.ts; where each field is:
  // README, Meta app set-up. One webhook function and one verify token serve both apps: each app signs
  // its deliveries with its own secret, which tells the receiver the path.
  if (facebookApp || neither) {
    console.log(`
Meta App Dashboard, the Facebook Login app (INSTAGRAM_APP_ID):
  Valid OAuth Redirect URI    ${redirectUri}
  Deauthorize callback URL    ${redirectUri}/deauthorize
  Data Deletion Request URL   ${redirectUri}/data-deletion
  Webhooks callback URL       ${webhook}
  Verify token                the value of INSTAGRAM_WEBHOOK_VERIFY_TOKEN in ${token}
`);
  }
  if (instagramApp || neither) {
    // Field names are no secret; the default when the configuration could not be read.
    const fields = config?.instagramLogin?.webhookFields ??
      ["messages", "messaging_seen", "message_reactions", "messaging_postbacks"];
    console.log(`
Meta App Dashboard, the Instagram Login app (INSTAGRAM_LOGIN_APP_ID):
  Instagram > API setup with Instagram login > 3. Set up Instagram business login > Business login settings:
  OAuth redirect URI          ${redirectUri}
  Deauthorize callback URL    ${redirectUri}/instagram/deauthorize
  Data deletion request URL   ${redirectUri}/instagram/data-deletion
  Instagram > API setup with Instagram login > 2. Configure webhooks:
  Callback URL                ${webhook}
  Verify token                the value of INSTAGRAM_WEBHOOK_VERIFY_TOKEN in ${token}
  Webhook fields              ${
      fields.length ? fields.join(", ") : "(none: INSTAGRAM_LOGIN_WEBHOOK_FIELDS is empty)"
    }
`);
  }
}
if (jwks) console.log(jwks.note);
for (const problem of problems) console.log(`problem: ${problem}`);
if (problems.length) {
  console.log(
    `${problems.length} problem${problems.length > 1 ? "s" : ""}: fix, then run deno task preflight again.`,
  );
  Deno.exit(1);
}
console.log(`All checks passed. Next: supabase secrets set --env-file ${envFile}`);

/** The linked project's ref, else SUPABASE_URL's; a line for each way they are wrong. */
async function projectRef(): Promise<{ ref?: string; from: string }> {
  const linked = await Deno.readTextFile(LINK_FILE).then((text) => text.trim(), () => undefined);
  const ofUrl = value("SUPABASE_URL")?.match(REF_OF_URL)?.[1];
  if (!linked) {
    if (!ofUrl) {
      problems.push(
        "no project ref: run supabase link --project-ref <project-ref> " +
          "(or set SUPABASE_URL=https://<project-ref>.supabase.co)",
      );
    }
    return { ref: ofUrl, from: ofUrl ? " (SUPABASE_URL's)" : "" };
  }
  if (!REF.test(linked)) {
    problems.push(`${LINK_FILE} holds no project ref (20 lowercase letters): run supabase link again`);
    return { from: "" };
  }
  if (ofUrl && ofUrl !== linked) {
    problems.push(`SUPABASE_URL is project ${ofUrl}'s, but supabase link names ${linked}: which one is it?`);
  }
  return { ref: linked, from: " (from supabase link)" };
}

/**
 * After Allow, the callback sends the doctor back to the dashboard (INSTAGRAM_FRONTEND_REDIRECT_URI),
 * whose page then calls instagram-connect from its origin (INSTAGRAM_ALLOWED_ORIGINS, CORS); without
 * them the doctor reads the callback's JSON, which only an app without a browser dashboard wants.
 */
function checkDashboard() {
  const frontend = "INSTAGRAM_FRONTEND_REDIRECT_URI";
  if (flags["json-answers"]) {
    if (value(frontend)) {
      problems.push(
        `${frontend} is set, but --json-answers was given: the callback redirects there; keep one`,
      );
    }
    return;
  }
  if (!value(frontend)) {
    problems.push(
      `${frontend} is not set: after Allow the doctor would land on the callback's JSON. Set it to the ` +
        "dashboard page that finishes the link (README, Dashboard integration), or give --json-answers",
    );
    return;
  }
  if (reported(frontend) || reported("INSTAGRAM_ALLOWED_ORIGINS")) return;
  const origin = new URL(value(frontend)!).origin;
  const allowed = (value("INSTAGRAM_ALLOWED_ORIGINS") ?? "").split(",").map((item) => item.trim());
  if (!allowed.includes(origin)) {
    problems.push(
      `INSTAGRAM_ALLOWED_ORIGINS does not list ${origin}, the origin of ${frontend}: ` +
        "the dashboard's calls to instagram-connect would fail (CORS)",
    );
  }
}

/**
 * A Business app's Facebook Login for Business expects a configuration (config_id); with only `scope`,
 * people report "It looks like this app isn't available" (laravel/socialite#716).
 */
function checkLogin() {
  if (flags["scope-login"]) {
    if (value("INSTAGRAM_CONFIG_ID")) {
      problems.push("INSTAGRAM_CONFIG_ID is set, but --scope-login was given: the dialog sends it; keep one");
    }
  } else if (!value("INSTAGRAM_CONFIG_ID")) {
    problems.push(
      "INSTAGRAM_CONFIG_ID is not set: Facebook Login for Business needs the id of a configuration " +
        "(README, Meta app set-up); give --scope-login if the app uses classic login with scopes",
    );
  }
}

/**
 * Doctors' sessions are verified against the project's JWKS only (@supabase/server: legacy HS256
 * tokens are refused). A key set without a signing key is a project still on the legacy JWT secret,
 * where every doctor would get 401. A JWKS that cannot be read proves nothing: "not checked".
 */
async function checkJwks(url: string): Promise<{ note: string; problem?: string }> {
  let answer: Response;
  try {
    answer = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  } catch (error) {
    return { note: `JWKS not checked: ${url} could not be reached (${(error as Error).message})` };
  }
  const body = await answer.json().catch(() => undefined);
  if (!answer.ok || !Array.isArray(body?.keys)) {
    return { note: `JWKS not checked: ${url} answered ${answer.status} without a key set` };
  }
  const signing = (body.keys as Record<string, unknown>[])
    .filter((key) => key?.kty !== "oct" && key?.use !== "enc");
  if (signing.length === 0) {
    return {
      note: `JWKS: no signing key at ${url}`,
      problem: "the project's JWKS holds no signing key: its sessions are still signed with the legacy JWT " +
        "secret, which instagram-connect refuses (401 to every doctor). Move the project to JWT signing " +
        'keys (Supabase docs, "JWT Signing Keys")',
    };
  }
  const algorithms = [...new Set(signing.map((key) => String(key.alg ?? key.kty)))].join(", ");
  return {
    note: `JWKS: ${signing.length} signing key${signing.length > 1 ? "s" : ""} (${algorithms}) at ${url}`,
  };
}

function pick(env: Record<string, string>, pattern: RegExp): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter(([name]) => pattern.test(name)));
}

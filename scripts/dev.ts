// `deno task dev [--pglite]`: the whole project on this machine.
//   http://127.0.0.1:54321/functions/v1/<name>              (every function of supabase/config.toml,
//                                                           at the paths `supabase functions serve` uses)
//   http://127.0.0.1:54321/rest/v1/...                      (PostgREST-compatible gateway)
//   http://127.0.0.1:54321/demo/                            (demo dashboard, local only)
//   the Meta sandbox on its own port (a fake consent page with demo Pages), and its webhook events
//   (/demo/sandbox/*, the dashboard's Messages panel), its health controls and "Run maintenance now"
// A fresh database for this checkout is made at each start: on DATABASE_URL, else the local PostgreSQL
// server, else (or with --pglite) an embedded PGlite in this process, in memory. Ctrl-C stops everything.
// Function secrets live where the Supabase CLI keeps them, supabase/functions/.env (`functions serve`
// and `secrets set --env-file` read it). Until that file names a real Meta app (and SUPABASE_URL and a
// secret key are set, in the file or the environment), everything runs locally on embedded defaults;
// then only the functions run, on those settings, against the real Meta and Supabase project, once
// INSTAGRAM_REDIRECT_URI is checked to lead back here (scripts/lib/dev_real_mode.ts; DEV_TUNNEL_URL declares
// a tunnel). The port (DEV_PORT) is checked before anything is made, so a port in use leaves nothing behind.
import { chooseHost, migrate, redactPassword } from "./lib/database.ts";
import { LOCAL_SECRET_KEY, proxyToFunction } from "./lib/local_stack.ts";
import { DEMO_PAGES, startDevStack } from "./lib/dev_stack.ts";
import { edgeFunctions } from "./lib/edge_functions.ts";
import { type FunctionProcess, startFunction } from "./lib/function_process.ts";
import { formatLogLine } from "./lib/log_lines.ts";
import { readDotEnv } from "./lib/dot_env.ts";
import { checkRedirectUri, realAppSteps } from "./lib/dev_real_mode.ts";

const ROOT = new URL("../", import.meta.url);
const PORT = Number(Deno.env.get("DEV_PORT") ?? 54321);
const ORIGIN = `http://127.0.0.1:${PORT}`;
const SECRETS_FILE = Deno.env.get("DEV_SECRETS_FILE") ?? "supabase/functions/.env";
// One database per checkout, so two checkouts on one machine do not drop each other's.
const DATABASE = Deno.env.get("DEV_DATABASE") ??
  `instagram_connect_dev_${(await hash(ROOT.pathname)).slice(0, 8)}`;
// Each required setting, by the names config.ts accepts for it (the first is the one to set). A Meta app
// is either one, or both (config.ts): the Facebook Login app, or the Instagram Login app.
const APPS = [
  ["INSTAGRAM_APP_ID", "INSTAGRAM_APP_SECRET"],
  ["INSTAGRAM_LOGIN_APP_ID", "INSTAGRAM_LOGIN_APP_SECRET"],
];
const REQUIRED = [
  ["INSTAGRAM_REDIRECT_URI"],
  ["INSTAGRAM_TOKEN_ENCRYPTION_KEYS", "INSTAGRAM_TOKEN_ENCRYPTION_KEY"],
  ["INSTAGRAM_WEBHOOK_VERIFY_TOKEN"],
  ["SUPABASE_URL"],
  ["SUPABASE_SECRET_KEYS", "SUPABASE_SECRET_KEY", "SUPABASE_SERVICE_ROLE_KEY"],
];
const printLine = (fn: string, line: string) => line.trim() && console.log(formatLogLine(fn, line));
const FUNCTIONS = edgeFunctions().map((fn) => fn.name);
/** The banner's lines for the functions, names aligned: "  instagram-connect   http://…". */
const functionLines = (url: (name: string) => string, width = 20) =>
  FUNCTIONS.map((name) => `  ${name.padEnd(width - 1)} ${url(name)}`).join("\n");

const secrets = await readDotEnv(new URL(SECRETS_FILE, ROOT));
const settings = { ...pick(Deno.env.toObject(), /^(SUPABASE|INSTAGRAM)_/), ...secrets.values };
const notReal = [
  ...(APPS.some((app) => app.every((name) => isReal(settings[name]))) ? [] : [
    "INSTAGRAM_APP_ID and INSTAGRAM_APP_SECRET (or INSTAGRAM_LOGIN_APP_ID and INSTAGRAM_LOGIN_APP_SECRET)",
  ]),
  ...REQUIRED.filter((names) => !names.some((name) => isReal(settings[name]))).map(([name]) => name),
];
try {
  // Before anything is made (a database, a PGlite, a function process): a port in use leaves nothing behind.
  ensurePortFree();
  if (notReal.length === 0) await runAgainstRealServices(settings);
  else await runLocalStack(whyLocal());
} catch (error) {
  // What is missing or wrong on this machine (a database, a port): said plainly, without a stack trace.
  // The port may also be taken between the check and the bind: the same sentence then.
  const message = error instanceof Deno.errors.AddrInUse ? portInUse() : (error as Error).message;
  console.error(`deno task dev: ${message}`);
  Deno.exit(1);
}

function whyLocal(): string {
  const rootEnv = exists(new URL(".env", ROOT))
    ? `\n  (.env at the project root is not read: the Supabase CLI keeps function secrets in ${SECRETS_FILE}.)`
    : "";
  if (!secrets.found) {
    return `there is no ${SECRETS_FILE} (cp .env.example ${SECRETS_FILE}, then fill it in).${rootEnv}`;
  }
  return `${SECRETS_FILE} names no real values yet for ${notReal.join(", ")} ` +
    `(empty or placeholders; SUPABASE_* may also come from the environment).${rootEnv}`;
}

/** Throws AddrInUse when something listens on the dev port already (`supabase start`, another dev). */
function ensurePortFree() {
  Deno.listen({ hostname: "127.0.0.1", port: PORT }).close();
}

function portInUse(): string {
  const holder = PORT === 54321 ? " (supabase start listens there: supabase stop frees it)" : "";
  const free = freePortFrom(PORT < 54400 ? 54400 : PORT + 1);
  return `port ${PORT} is in use${holder}: stop what holds it, or run DEV_PORT=${free} deno task dev`;
}

/** The first port from `start` nothing listens on (past `supabase start`'s 54321-54329 by default). */
function freePortFrom(start: number): number {
  for (let port = start; port < start + 100 && port < 65536; port++) {
    try {
      Deno.listen({ hostname: "127.0.0.1", port }).close();
      return port;
    } catch { /* taken: the next */ }
  }
  return start;
}

async function runLocalStack(why: string) {
  const database = await chooseHost({ pglite: Deno.args.includes("--pglite") });
  const { host } = database;
  let databaseUrl: string;
  let dev: Awaited<ReturnType<typeof startDevStack>>;
  try {
    await host.dropDatabase(DATABASE);
    databaseUrl = await host.createDatabase(DATABASE);
    await migrate(databaseUrl);
    dev = await startDevStack({ databaseUrl, port: PORT, onFunctionLine: printLine });
  } catch (error) {
    // Whatever was made goes: the database this start created (a server's), or the embedded PGlite.
    await host.close();
    throw error;
  }
  const { stack } = dev;

  // Ctrl-C is caught from here on: the banner below tells the user (and the tests) they may press it.
  const stopped = untilInterrupted(async () => {
    await dev.stop();
    await host.close();
  });
  console.log(`
Instagram connect: local stack on embedded defaults (nothing leaves this machine), because
  ${why}

  Demo dashboard      ${dev.dashboardUrl}
${functionLines((name) => stack.functionUrl(name))}
  REST gateway        ${stack.url}/rest/v1/
  Meta sandbox        ${stack.meta.url} (its consent pages open from the Connect buttons, with the flow's state)
  Database            ${redactPassword(databaseUrl)}
                      ${host.version}${
    host.oneSession ? ", in this process, in memory" : ""
  }, because ${database.why}

  Sign in as Dr. Demo, Connect with Facebook, Allow as sandbox user "demo", then choose "${DEMO_PAGES.sunrise.name}";
  or Connect with Instagram and Allow as the Instagram-only sandbox account (no Facebook Page).
  Then, under Messages, the Meta sandbox sends a patient's message, a reaction or an unsend to instagram-webhook.
  Its other Meta sandbox breaks the link (a killed token, a lost subscription, data access ending, a permission
  taken back); Run maintenance now shows what the next check finds, and Reconnect brings the link back.
  Local-only values (not secrets): webhook Verify Token ${stack.env.INSTAGRAM_WEBHOOK_VERIFY_TOKEN},
  app secrets ${stack.env.INSTAGRAM_APP_SECRET} (Facebook) and ${stack.env.INSTAGRAM_LOGIN_APP_SECRET} (Instagram;
  each signs its path's deliveries), secret key ${LOCAL_SECRET_KEY} (the worker's apikey).
  Allow as "lakeside_admin" instead: "${DEMO_PAGES.lakeside.name}" is Dr. Other's, so it is shown as taken.
  Open a connect URL signed in as Dr. Other to see it refused: only the doctor who started may finish.
  Function log lines follow (the [id] at the end is the start of the correlation id). Ctrl-C stops.
`);
  await stopped;
}

async function runAgainstRealServices(env: Record<string, string>) {
  const tunnelUrl = Deno.env.get("DEV_TUNNEL_URL") || undefined;
  const redirect = checkRedirectUri({
    redirectUri: env.INSTAGRAM_REDIRECT_URI,
    supabaseUrl: env.SUPABASE_URL,
    port: PORT,
    tunnelUrl,
  });
  for (const line of redirect.warnings) console.error(`deno task dev: warning: ${line}`);
  if (redirect.refusals.length > 0) {
    for (const line of redirect.refusals) console.error(`deno task dev: ${line}`);
    console.error(`Fix ${SECRETS_FILE} (or DEV_TUNNEL_URL), then start again.`);
    Deno.exit(1);
  }
  const functions: FunctionProcess[] = [];
  // Bound before any function starts, so a port taken now leaves no function process behind.
  const router = Deno.serve({ hostname: "127.0.0.1", port: PORT, onListen: () => {} }, async (request) => {
    const url = new URL(request.url);
    return await proxyToFunction(request, url, functions) ?? new Response("Not found", { status: 404 });
  });
  for (const name of FUNCTIONS) {
    const started = await startFunction(name, env, { onLine: (line) => printLine(name, line) }).catch(() => {
      // Its lines, one per variable at fault, were printed as it printed them.
      console.error(`\n${name} did not start on ${SECRETS_FILE}: see the lines above.`);
      return undefined;
    });
    if (!started) {
      await Promise.all(functions.map((fn) => fn.stop()));
      await router.shutdown();
      Deno.exit(1);
    }
    functions.push(started);
  }
  const leadsHere = redirect.warnings.length === 0 && redirect.refusals.length === 0;
  const where = !leadsHere
    ? "elsewhere: see the warning above"
    : tunnelUrl
    ? "here, through the tunnel"
    : "here";
  // Ctrl-C is caught from here on: the banner below tells the user (and the tests) they may press it.
  const stopped = untilInterrupted(async () => {
    await Promise.all(functions.map((fn) => fn.stop()));
    await router.shutdown();
  });
  console.log(`
Instagram connect: the functions on ${SECRETS_FILE} (a real Meta app, Supabase project ${env.SUPABASE_URL})

${functionLines((name) => `${ORIGIN}/functions/v1/${name}`)}
  Meta's redirect after Allow: ${env.INSTAGRAM_REDIRECT_URI} (${where})

${realAppSteps(PORT, redirect.uriToRegister, env.SUPABASE_URL)}

  Function log lines follow. Ctrl-C stops.
`);
  await stopped;
}

function untilInterrupted(stop: () => Promise<void>): Promise<void> {
  return new Promise((resolve) => {
    let stopping = false;
    // A terminal's Ctrl-C reaches both `deno task` and this process: stop once.
    const onSignal = async () => {
      if (stopping) return;
      stopping = true;
      console.log("\nstopping…");
      await stop();
      resolve();
      Deno.exit(0);
    };
    Deno.addSignalListener("SIGINT", onSignal);
    Deno.addSignalListener("SIGTERM", onSignal);
  });
}

/** A value someone actually filled in: not empty, not a `<placeholder>`, not an elided `sb_secret_...`. */
function isReal(value: string | undefined): boolean {
  return !!value && !/[<>]|\.\.\./.test(value);
}

function pick(env: Record<string, string>, pattern: RegExp): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter(([name]) => pattern.test(name)));
}

function exists(url: URL): boolean {
  try {
    Deno.statSync(url);
    return true;
  } catch {
    return false;
  }
}

async function hash(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

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
// then only the functions run, on those settings, against the real Meta and Supabase project.
import { chooseHost, migrate, redactPassword } from "./lib/database.ts";
import { LOCAL_SECRET_KEY, proxyToFunction } from "./lib/local_stack.ts";
import { DEMO_PAGES, startDevStack } from "./lib/dev_stack.ts";
import { edgeFunctions } from "./lib/edge_functions.ts";
import { type FunctionProcess, startFunction } from "./lib/function_process.ts";
import { formatLogLine } from "./lib/log_lines.ts";
import { readDotEnv } from "./lib/dot_env.ts";

const ROOT = new URL("../", import.meta.url);
const PORT = Number(Deno.env.get("DEV_PORT") ?? 54321);
const ORIGIN = `http://127.0.0.1:${PORT}`;
const SECRETS_FILE = Deno.env.get("DEV_SECRETS_FILE") ?? "supabase/functions/.env";
// One database per checkout, so two checkouts on one machine do not drop each other's.
const DATABASE = Deno.env.get("DEV_DATABASE") ??
  `instagram_connect_dev_${(await hash(ROOT.pathname)).slice(0, 8)}`;
// Each required setting, by the names config.ts accepts for it (the first is the one to set).
const REQUIRED = [
  ["INSTAGRAM_APP_ID"],
  ["INSTAGRAM_APP_SECRET"],
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
const notReal = REQUIRED.filter((names) => !names.some((name) => isReal(settings[name])))
  .map(([name]) => name);
try {
  if (notReal.length === 0) await runAgainstRealServices(settings);
  else await runLocalStack(whyLocal());
} catch (error) {
  // What is missing or wrong on this machine (a database, a port): said plainly, without a stack trace.
  console.error(`deno task dev: ${(error as Error).message}`);
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

async function runLocalStack(why: string) {
  const database = await chooseHost({ pglite: Deno.args.includes("--pglite") });
  const { host } = database;
  await host.dropDatabase(DATABASE);
  const databaseUrl = await host.createDatabase(DATABASE);
  await migrate(databaseUrl);
  const dev = await startDevStack({ databaseUrl, port: PORT, onFunctionLine: printLine });
  const { stack } = dev;

  console.log(`
Instagram connect: local stack on embedded defaults (nothing leaves this machine), because
  ${why}

  Demo dashboard      ${dev.dashboardUrl}
${functionLines((name) => stack.functionUrl(name))}
  REST gateway        ${stack.url}/rest/v1/
  Meta sandbox        ${stack.meta.url} (its consent page opens from Connect Instagram, with the flow's state)
  Database            ${redactPassword(databaseUrl)}
                      ${host.version}${
    host.oneSession ? ", in this process, in memory" : ""
  }, because ${database.why}

  Sign in as Dr. Demo, Connect, Allow as sandbox user "demo", then choose "${DEMO_PAGES.sunrise.name}".
  Then, under Messages, the Meta sandbox sends a patient's message, a reaction or an unsend to instagram-webhook.
  Its other Meta sandbox breaks the link (a killed token, a lost subscription, data access ending, a permission
  taken back); Run maintenance now shows what the next check finds, and Reconnect brings the link back.
  Local-only values (not secrets): webhook Verify Token ${stack.env.INSTAGRAM_WEBHOOK_VERIFY_TOKEN},
  app secret ${stack.env.INSTAGRAM_APP_SECRET} (signs deliveries), secret key ${LOCAL_SECRET_KEY} (the worker's apikey).
  Allow as "lakeside_admin" instead: "${DEMO_PAGES.lakeside.name}" is Dr. Other's, so it is shown as taken.
  Open a connect URL signed in as Dr. Other to see it refused: only the doctor who started may finish.
  Function log lines follow (the [id] at the end is the start of the correlation id). Ctrl-C stops.
`);
  await untilInterrupted(async () => {
    await dev.stop();
    await host.close();
  });
}

async function runAgainstRealServices(env: Record<string, string>) {
  const functions: FunctionProcess[] = [];
  for (const name of FUNCTIONS) {
    const started = await startFunction(name, env, { onLine: (line) => printLine(name, line) }).catch(() => {
      // Its lines, one per variable at fault, were printed as it printed them.
      console.error(`\n${name} did not start on ${SECRETS_FILE}: see the lines above.`);
      return undefined;
    });
    if (!started) {
      await Promise.all(functions.map((fn) => fn.stop()));
      Deno.exit(1);
    }
    functions.push(started);
  }
  const router = Deno.serve({ hostname: "127.0.0.1", port: PORT, onListen: () => {} }, async (request) => {
    const url = new URL(request.url);
    return await proxyToFunction(request, url, functions) ?? new Response("Not found", { status: 404 });
  });
  console.log(`
Instagram connect: the functions on ${SECRETS_FILE} (a real Meta app, Supabase project ${env.SUPABASE_URL})

${functionLines((name) => `${ORIGIN}/functions/v1/${name}`)}
  (INSTAGRAM_REDIRECT_URI must lead to instagram-callback)

  Function log lines follow. Ctrl-C stops.
`);
  await untilInterrupted(async () => {
    await Promise.all(functions.map((fn) => fn.stop()));
    await router.shutdown();
  });
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

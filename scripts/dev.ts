// `deno task dev`: the whole project on this machine, on embedded defaults.
//   http://127.0.0.1:54321/functions/v1/instagram-connect   (same paths as `supabase functions serve`)
//   http://127.0.0.1:54321/functions/v1/instagram-callback
//   http://127.0.0.1:54321/rest/v1/...                      (PostgREST-compatible gateway)
//   http://127.0.0.1:54321/demo/                            (demo dashboard, local only)
//   the Meta sandbox on its own port (a fake consent page with demo Pages)
// A fresh database `instagram_connect_dev` is made at each start. Ctrl-C stops everything.
// With a .env that sets INSTAGRAM_APP_ID and SUPABASE_URL, only the two functions run, on those
// settings, talking to the real Meta and the real Supabase project.
import { createDatabase, dropDatabase, ensurePostgres, migrate } from "./lib/database.ts";
import { proxyToFunction } from "./lib/local_stack.ts";
import { DEMO_PAGES, startDevStack } from "./lib/dev_stack.ts";
import { type FunctionProcess, startFunction } from "./lib/function_process.ts";

const PORT = Number(Deno.env.get("DEV_PORT") ?? 54321);
const ORIGIN = `http://127.0.0.1:${PORT}`;
const DATABASE = "instagram_connect_dev";

const dotEnv = await readDotEnv(new URL("../.env", import.meta.url));
if (dotEnv.INSTAGRAM_APP_ID && dotEnv.SUPABASE_URL) await runAgainstRealServices(dotEnv);
else await runLocalStack();

async function runLocalStack() {
  await ensurePostgres();
  await dropDatabase(DATABASE);
  const databaseUrl = await createDatabase(DATABASE);
  await migrate(databaseUrl);
  const dev = await startDevStack({ databaseUrl, port: PORT });
  const { stack } = dev;

  console.log(`
Instagram connect – local stack (embedded defaults, nothing leaves this machine)

  Demo dashboard      ${dev.dashboardUrl}
  instagram-connect   ${stack.functionUrl("instagram-connect")}
  instagram-callback  ${stack.functionUrl("instagram-callback")}
  REST gateway        ${stack.url}/rest/v1/
  Meta sandbox        ${stack.meta.url}/${stack.env.INSTAGRAM_GRAPH_VERSION}/dialog/oauth
  Database            ${databaseUrl}

  Sign in as Dr. Demo, Connect, Allow as sandbox user "demo", then choose "${DEMO_PAGES.sunrise.name}".
  Allow as "lakeside_admin" instead to see the conflict: "${DEMO_PAGES.lakeside.name}" is Dr. Other's (409).
  Open a connect URL signed in as Dr. Other to see it refused: only the doctor who started may finish.
  Press Ctrl-C to stop.
`);
  await untilInterrupted(() => dev.stop());
}

async function runAgainstRealServices(env: Record<string, string>) {
  const functions: FunctionProcess[] = [];
  for (const name of ["instagram-connect", "instagram-callback"]) {
    functions.push(await startFunction(name, env));
  }
  const router = Deno.serve({ hostname: "127.0.0.1", port: PORT, onListen: () => {} }, async (request) => {
    const url = new URL(request.url);
    return await proxyToFunction(request, url, functions) ?? new Response("Not found", { status: 404 });
  });
  console.log(`
Instagram connect – functions on .env (real Meta app, Supabase project ${env.SUPABASE_URL})

  instagram-connect   ${ORIGIN}/functions/v1/instagram-connect
  instagram-callback  ${ORIGIN}/functions/v1/instagram-callback  (INSTAGRAM_REDIRECT_URI must point here)

  Function logs follow. Press Ctrl-C to stop.
`);
  const printed = new Map<string, number>();
  const timer = setInterval(() => {
    for (const fn of functions) {
      const output = fn.output();
      const from = printed.get(fn.name) ?? 0;
      if (output.length > from) Deno.stdout.writeSync(new TextEncoder().encode(output.slice(from)));
      printed.set(fn.name, output.length);
    }
  }, 250);
  await untilInterrupted(async () => {
    clearInterval(timer);
    await Promise.all(functions.map((fn) => fn.stop()));
    await router.shutdown();
  });
}

function untilInterrupted(stop: () => Promise<void>): Promise<void> {
  return new Promise((resolve) => {
    const onSignal = async () => {
      console.log("\nstopping…");
      await stop();
      resolve();
      Deno.exit(0);
    };
    Deno.addSignalListener("SIGINT", onSignal);
    Deno.addSignalListener("SIGTERM", onSignal);
  });
}

async function readDotEnv(url: URL): Promise<Record<string, string>> {
  let text = "";
  try {
    text = await Deno.readTextFile(url);
  } catch {
    return {};
  }
  const env: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const match = line.match(/^\s*([A-Z0-9_]+)\s*=\s*(.*?)\s*$/);
    if (match && match[2] !== "") env[match[1]] = match[2].replace(/^(['"])(.*)\1$/, "$2");
  }
  return env;
}

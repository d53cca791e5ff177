// `deno task dev`: the whole project on this machine, on embedded defaults.
//   http://127.0.0.1:54321/functions/v1/instagram-connect   (same paths as `supabase functions serve`)
//   http://127.0.0.1:54321/functions/v1/instagram-callback
//   http://127.0.0.1:54321/rest/v1/...                      (PostgREST-compatible gateway)
//   http://127.0.0.1:54321/demo/                            (demo dashboard, local only)
//   the Meta sandbox on its own port (a fake consent page with demo Pages)
// A fresh database `instagram_connect_dev` is made at each start. Ctrl-C stops everything.
// With a .env that sets INSTAGRAM_APP_ID and SUPABASE_URL, only the two functions run, on those
// settings, talking to the real Meta and the real Supabase project.
import postgres from "postgres";
import { createDatabase, dropDatabase, ensurePostgres, migrate } from "./lib/database.ts";
import { LOCAL_PUBLISHABLE_KEY, proxyToFunction, startLocalStack } from "./lib/local_stack.ts";
import { startFunction, type FunctionProcess } from "./lib/function_process.ts";
import { encryptPageToken, importTokenKey } from "../supabase/functions/_shared/token_crypto.ts";
import { decodeBase64 } from "../supabase/functions/_shared/config.ts";
import { ERRORS } from "../supabase/functions/_shared/errors.ts";

const PORT = Number(Deno.env.get("DEV_PORT") ?? 54321);
const ORIGIN = `http://127.0.0.1:${PORT}`;
const DATABASE = "instagram_connect_dev";
const DOCTORS = {
  demo: { id: "11111111-1111-4111-8111-111111111111", name: "Dr. Demo" },
  other: { id: "22222222-2222-4222-8222-222222222222", name: "Dr. Other" },
};
const PAGES = [
  { id: "100000000000001", name: "Sunrise Dental", instagram: { id: "17841400000000001", username: "sunrise_dental" } },
  { id: "100000000000002", name: "Lakeside Physio", instagram: { id: "17841400000000002", username: "lakeside_physio" } },
  { id: "100000000000003", name: "Old Town Clinic (no Instagram)" },
];

const dotEnv = await readDotEnv(new URL("../.env", import.meta.url));
if (dotEnv.INSTAGRAM_APP_ID && dotEnv.SUPABASE_URL) await runAgainstRealServices(dotEnv);
else await runLocalStack();

async function runLocalStack() {
  await ensurePostgres();
  await dropDatabase(DATABASE);
  const databaseUrl = await createDatabase(DATABASE);
  await migrate(databaseUrl);

  const dashboard = await Deno.readTextFile(new URL("demo/dashboard.html", import.meta.url));
  const stack = await startLocalStack({
    databaseUrl,
    port: PORT,
    env: { INSTAGRAM_FRONTEND_REDIRECT_URI: `${ORIGIN}/demo/`, INSTAGRAM_ALLOWED_ORIGINS: ORIGIN },
    extraRoutes: async (request, url) => {
      if (url.pathname === "/demo" || url.pathname === "/") return Response.redirect(`${ORIGIN}/demo/`, 302);
      if (url.pathname === "/demo/") {
        const config = {
          supabaseUrl: ORIGIN,
          publishableKey: LOCAL_PUBLISHABLE_KEY,
          connectUrl: `${ORIGIN}/functions/v1/instagram-connect`,
        };
        const messages = Object.fromEntries(Object.entries(ERRORS).map(([code, [, message]]) => [code, message]));
        return new Response(
          dashboard.replace("__CONFIG__", JSON.stringify(config)).replace("__ERRORS__", JSON.stringify(messages)),
          { headers: { "content-type": "text/html; charset=utf-8" } },
        );
      }
      if (url.pathname === "/demo/session" && request.method === "POST") {
        const doctor = DOCTORS[url.searchParams.get("doctor") as keyof typeof DOCTORS] ?? DOCTORS.demo;
        const accessToken = await stack.jwt.sign({ sub: doctor.id, email: `${doctor.id}@demo.local` });
        return Response.json({ access_token: accessToken, user_id: doctor.id, name: doctor.name });
      }
    },
  });

  stack.meta.addUser("demo", PAGES);
  await seed(databaseUrl, stack.env.INSTAGRAM_TOKEN_ENCRYPTION_KEY);

  console.log(`
Instagram connect – local stack (embedded defaults, nothing leaves this machine)

  Demo dashboard      ${ORIGIN}/demo/
  instagram-connect   ${stack.functionUrl("instagram-connect")}
  instagram-callback  ${stack.functionUrl("instagram-callback")}
  REST gateway        ${ORIGIN}/rest/v1/
  Meta sandbox        ${stack.meta.url}/v24.0/dialog/oauth
  Database            ${databaseUrl}

  Dr. Demo can link "Sunrise Dental"; "Lakeside Physio" is already linked to Dr. Other (409).
  Press Ctrl-C to stop.
`);
  await untilInterrupted(() => stack.stop());
}

async function seed(databaseUrl: string, base64Key: string) {
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  for (const doctor of Object.values(DOCTORS)) {
    await sql`insert into auth.users (id, email) values (${doctor.id}, ${`${doctor.id}@demo.local`})`;
  }
  const key = await importTokenKey(decodeBase64(base64Key)!);
  const page = PAGES[1];
  await sql`
    insert into public.doctor_instagram
      (doctor_id, instagram_page_id, instagram_access_token, instagram_username, page_name, instagram_business_account_id)
    values (${DOCTORS.other.id}, ${page.id},
            ${await encryptPageToken(key, "EAAGdemoOtherDoctorPageToken", { doctorId: DOCTORS.other.id, pageId: page.id })},
            ${page.instagram!.username}, ${page.name}, ${page.instagram!.id})`;
  await sql.end();
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

// Shared by the end-to-end tests: the real functions (deno serve processes) behind the local
// PostgREST-compatible gateway, the fake Meta, and a direct connection to the test database that
// `deno task test` created (TEST_DATABASE_URL) for seeding users and reading what was written.
import assert from "node:assert/strict";
import postgres from "postgres";
import { type LocalStack, startLocalStack } from "../../../scripts/lib/local_stack.ts";
export { signedRequest } from "../../../scripts/lib/fake_meta.ts";

export const databaseUrl = Deno.env.get("TEST_DATABASE_URL") ?? "";
if (!databaseUrl) {
  throw new Error(
    "TEST_DATABASE_URL is not set: run the suite with `deno task test`, which creates the database.",
  );
}

/** "pglite" when the suite runs on the embedded PGlite (one session: transactions never overlap). */
export const databaseEngine = Deno.env.get("TEST_DATABASE_ENGINE") === "pglite" ? "pglite" : "server";

/**
 * Marks a test (or step) that races requests at the database. On a server they really overlap; on
 * PGlite they run one after the other, and `deno task test` lists these tests to say so.
 */
export function racesRequests(t: Deno.TestContext): void {
  const log = Deno.env.get("TEST_RACE_LOG");
  const name = [t.parent?.name, t.name].filter(Boolean).join(" > ");
  if (log) Deno.writeTextFileSync(log, `${name}\n`, { append: true });
}

/**
 * For a script a test runs (`deno task dev`, `deno task bench`): the suite's server (it makes its own
 * database there), or, on PGlite, a PGlite of its own (`--pglite`; one PGlite holds one database).
 */
export function scriptDatabase(): { args: string[]; env: Record<string, string> } {
  return databaseEngine === "pglite"
    ? { args: ["--pglite"], env: {} }
    : { args: [], env: { DATABASE_URL: new URL("/postgres", databaseUrl).toString() } };
}

/** Shared-resource tests: the stack lives across steps, so Deno's per-test leak checks are off. */
export const stackTest = { sanitizeOps: false, sanitizeResources: false };

export async function withStack(
  options: { env?: Record<string, string>; metaLatencyMs?: number },
  body: (stack: LocalStack, sql: postgres.Sql) => Promise<void>,
): Promise<void> {
  const sql = postgres(databaseUrl, { max: 2, onnotice: () => {} });
  const stack = await startLocalStack({ databaseUrl, ...options });
  try {
    await body(stack, sql);
  } finally {
    await stack.stop();
    await sql.end();
  }
}

/** A doctor: a row in auth.users and a session token signed like Supabase Auth's. */
export async function newDoctor(stack: LocalStack, sql: postgres.Sql) {
  const id = crypto.randomUUID();
  await sql`insert into auth.users (id, email) values (${id}, ${`${id}@example.test`})`;
  return { id, token: await stack.jwt.sign({ sub: id, email: `${id}@example.test` }) };
}

export async function startConnect(
  stack: LocalStack,
  token: string,
  query = "",
): Promise<{ url: string; expires_at: string }> {
  const response = await fetch(`${stack.functionUrl("instagram-connect")}${query}`, {
    headers: { authorization: `Bearer ${token}`, accept: "application/json" },
  });
  if (response.status !== 200) {
    throw new Error(`connect answered ${response.status}: ${await response.text()}`);
  }
  return await response.json();
}

export interface HttpResult {
  status: number;
  body: any;
  location: string | null;
  headers: Headers;
}

async function result(response: Response): Promise<HttpResult> {
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch { /* a redirect has no JSON body */ }
  return {
    status: response.status,
    body,
    location: response.headers.get("location"),
    headers: response.headers,
  };
}

/** What the browser does with Meta's redirect: GET the callback (without following its redirect). */
export async function callback(url: string): Promise<HttpResult> {
  return await result(await fetch(url, { redirect: "manual" }));
}

/** Connect, Allow as `metaUserId` at the fake Meta, then follow Meta's redirect to the callback. */
export async function fullFlow(stack: LocalStack, token: string, metaUserId: string, query = "") {
  const { url } = await startConnect(stack, token, query);
  const redirect = await stack.meta.approve(url, metaUserId);
  return { redirect, result: await callback(redirect) };
}

/** POST /instagram-connect/finish as the signed-in doctor whose session token is `token`. */
export async function finish(
  stack: LocalStack,
  token: string,
  body: Record<string, unknown>,
): Promise<HttpResult> {
  return await result(
    await fetch(`${stack.functionUrl("instagram-connect")}/finish`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    }),
  );
}

/** The whole link: connect, Allow at Meta, callback, finish (choosing `pageId` when given). */
export async function link(stack: LocalStack, token: string, metaUserId: string, pageId?: string) {
  const flow = await fullFlow(stack, token, metaUserId);
  if (flow.result.status !== 200) return { ...flow, finished: flow.result };
  const finished = await finish(stack, token, { pending: flow.result.body.pending, page_id: pageId });
  return { ...flow, finished };
}

/**
 * A doctor linked through the fake Meta to a Page of their own with an Instagram account: its id is
 * `accountPrefix` and 12 random digits (each webhook test file keeps its accounts apart by its prefix).
 */
export async function pageLinkedDoctor(stack: LocalStack, sql: postgres.Sql, accountPrefix: string) {
  const doctor = await newDoctor(stack, sql);
  const n = String(Math.floor(Math.random() * 1e12)).padStart(12, "0");
  const page = {
    id: `2${n}`,
    name: `Clinic ${n}`,
    instagram: { id: `${accountPrefix}${n}`, username: `clinic_${n}` },
  };
  const { finished } = await link(stack, doctor.token, stack.meta.addUser(`hook-${doctor.id}`, [page]));
  assert.equal(finished.status, 200, JSON.stringify(finished.body));
  return { ...doctor, page, accountId: page.instagram.id };
}

export async function linkOf(sql: postgres.Sql, doctorId: string) {
  const [row] = await sql`select * from public.doctor_instagram where doctor_id = ${doctorId}`;
  return row;
}

export async function auditOf(sql: postgres.Sql, doctorId: string) {
  return await sql`select * from private.audit_log where resource_id = ${doctorId} order by id`;
}

export async function pendingOf(sql: postgres.Sql, doctorId: string) {
  return await sql`select * from private.pending_connections where doctor_id = ${doctorId} order by created_at`;
}

export function metaCallCount(stack: LocalStack): number {
  const { code_exchange, token_exchange, list_pages } = stack.meta.calls;
  return code_exchange + token_exchange + list_pages;
}

/** POST to one of instagram-callback's routes (Meta's callbacks send a form). */
export function post(
  stack: LocalStack,
  route: string,
  body: BodyInit,
  contentType = "application/x-www-form-urlencoded",
) {
  return fetch(`${stack.functionUrl("instagram-callback")}/${route}`, {
    method: "POST",
    headers: { "content-type": contentType },
    body,
  });
}

// ---- `deno task dev` as a process (dev_test.ts; workflow_test.ts runs it in a scratch copy) ----

const ROOT = new URL("../../../", import.meta.url);
const DEV_DATABASE = `instagram_connect_devtest_${Deno.pid}`;

/** On a server, `deno task dev` keeps its database for its next start; a test's goes when it ends. */
export async function dropDevDatabase() {
  if (databaseEngine !== "server") return;
  const admin = postgres(new URL("/postgres", databaseUrl).toString(), { max: 1, onnotice: () => {} });
  await admin.unsafe(`drop database if exists "${DEV_DATABASE}" with (force)`);
  await admin.end();
}

/** Whether the dev database of runDev exists on the server (always false on PGlite: it lives in dev's process). */
export async function devDatabaseExists(): Promise<boolean> {
  if (databaseEngine !== "server") return false;
  const admin = postgres(new URL("/postgres", databaseUrl).toString(), { max: 1, onnotice: () => {} });
  try {
    return (await admin`select 1 from pg_database where datname = ${DEV_DATABASE}`).length > 0;
  } finally {
    await admin.end();
  }
}

/**
 * This user's processes whose environment holds `entry` (Linux): a function process of `deno task dev`
 * carries its SUPABASE_URL or redirect URI, so this finds one that outlived dev, whoever its parent is now.
 */
export async function processesWithEnv(entry: string): Promise<number[]> {
  const found: number[] = [];
  for await (const { name } of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(name) || Number(name) === Deno.pid) continue;
    const environ = await Deno.readTextFile(`/proc/${name}/environ`).catch(() => "");
    if (environ.split("\0").includes(entry)) found.push(Number(name));
  }
  return found;
}

function pick(env: Record<string, string>, names: string[]): Record<string, string> {
  return Object.fromEntries(names.filter((name) => env[name] !== undefined).map((name) => [name, env[name]]));
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/**
 * Runs scripts/dev.ts until `until` matches its output (then Ctrl-C) or it exits by itself. Once the
 * banner is printed, `whenReady` runs with the dev origin (and may make requests). The database is the
 * suite's (or PGlite when `database` says `--pglite`); `root` is the checkout whose scripts/dev.ts runs.
 */
export async function runDev(
  secretsFile: string,
  env: Record<string, string>,
  until: RegExp,
  whenReady?: (origin: string, banner: string) => Promise<void>,
  database = scriptDatabase(),
  root = ROOT,
) {
  const port = freePort();
  let ready: Promise<void> | undefined;
  // Only what we give it: a SUPABASE_URL exported in the shell running the suite must not change modes.
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "--unstable-no-legacy-abort", "scripts/dev.ts", ...database.args],
    cwd: root,
    clearEnv: true,
    env: {
      ...pick(Deno.env.toObject(), ["HOME", "PATH", "DENO_DIR", "TMPDIR"]),
      DEV_SECRETS_FILE: secretsFile,
      DEV_PORT: String(port),
      DEV_DATABASE: DEV_DATABASE,
      ...database.env,
      NO_COLOR: "1",
      ...env,
    },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let output = "";
  let interrupted = false;
  let children: number[] = [];
  const read = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      output += chunk;
      if (whenReady && !ready && /Ctrl-C stops/.test(output)) {
        ready = whenReady(`http://127.0.0.1:${port}`, output);
      }
      if (!interrupted && until.test(output)) {
        interrupted = true;
        children = await childrenOf(child.pid);
        child.kill("SIGINT");
      }
    }
  };
  const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  await Promise.all([read(child.stdout), read(child.stderr)]);
  const { code } = await child.status;
  clearTimeout(timer);
  await ready;
  return { code, output, interrupted, port, children };
}

/** The processes `pid` started (Linux): for `deno task dev`, its two functions. */
async function childrenOf(pid: number): Promise<number[]> {
  const text = await Deno.readTextFile(`/proc/${pid}/task/${pid}/children`).catch(() => "");
  return text.trim().split(/\s+/).filter(Boolean).map(Number);
}

/** A copy of this checkout's files (tracked, and untracked unless git ignores them), without .git. */
export async function scratchCopy(): Promise<URL> {
  const listed = await new Deno.Command("git", {
    args: ["ls-files", "-z", "--cached", "--others", "--exclude-standard"],
    cwd: ROOT,
    stdout: "piped",
  }).output();
  if (!listed.success) throw new Error("git ls-files failed: a scratch copy needs this checkout's git");
  const dir = new URL(`file://${await Deno.makeTempDir({ prefix: "scratch-checkout-" })}/`);
  for (const path of new TextDecoder().decode(listed.stdout).split("\0").filter(Boolean)) {
    const target = new URL(path, dir);
    await Deno.mkdir(new URL(".", target), { recursive: true });
    await Deno.copyFile(new URL(path, ROOT), target).catch((error) => {
      if (!(error instanceof Deno.errors.NotFound)) throw error; // deleted in the work tree, not yet in git
    });
  }
  return dir;
}

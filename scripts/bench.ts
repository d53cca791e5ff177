// `deno task bench [flows=400] [latency_ms=25] [--pglite]`
// The whole link flow (connect, callback, finish) of the real functions, against its floor measured in
// the same run: scripts/bench/floor_function.ts makes the same Meta calls and database round trips,
// through the same router, gateway and fake Meta (+latency_ms per Graph call), in two processes as the
// real functions are, with none of our logic. overhead_ratio = real flow p50 / floor flow p50, at
// concurrency 1 (flows / 4 of each) and 16 (flows of each); the two alternate in rounds so that drift
// of the machine falls on both. Then CPU per flow of the function processes, cold start (to the first
// real answer) against a hello-world `deno serve` started the same way, and the code loaded per
// function. Prints a table; the last line holds the figures as key=value.
import postgres from "postgres";
import { chooseHost, migrate } from "./lib/database.ts";
import { signedRequest } from "./lib/fake_meta.ts";
import { directMessage, instagramDelivery, webhookSignature } from "./lib/fake_meta_webhooks.ts";
import { type FunctionProcess, startFunction } from "./lib/function_process.ts";
import type { LoadMessage, LoadPlan } from "./lib/load_generator.ts";
import { edgeFunctions } from "./lib/edge_functions.ts";
import { type LocalStack, startLocalStack, tokenKeyringOf } from "./lib/local_stack.ts";
import type { WebhookPlan, WebhookRun } from "./lib/webhook_load.ts";
import { seedLink } from "./lib/dev_stack.ts";

const numbers = Deno.args.filter((arg) => arg !== "--pglite");
const [flows, latencyMs] = [numbers[0] ?? 400, numbers[1] ?? 25].map(Number);
const CONCURRENCY = [1, 16] as const;
const ROUNDS = 2;
const WARMUP_FLOWS = 20;
const COLD_STARTS = 5;
const FLOOR = [
  { name: "bench-floor", entry: "scripts/bench/floor_function.ts" },
  { name: "bench-floor-callback", entry: "scripts/bench/floor_function.ts" },
];
// instagram-webhook's floor: signature, JSON.parse, the same RPC storing the same rows.
const WEBHOOK_FLOOR = { name: "bench-webhook-floor", entry: "scripts/bench/webhook_floor.ts" };
// Deliveries per side (both sides, in ROUNDS alternating rounds), each with new mids: one event per
// delivery for the overhead ratio, 100 for throughput (4 at a time), 1000 (Meta's largest batch) one
// at a time for the time to answer one.
const WEBHOOK_SHAPES = [
  { events: 1, deliveries: flows, concurrency: 8, warmup: 10 },
  { events: 100, deliveries: Math.ceil(flows / 8), concurrency: 4, warmup: 1 },
  { events: 1000, deliveries: Math.ceil(flows / 16), concurrency: 1, warmup: 1 },
] as const;
type WebhookShape = typeof WEBHOOK_SHAPES[number];
const HELLO = { name: "hello", entry: "scripts/bench/hello_function.ts" };
/** Each function's first real request for its cold start; a function without one is not measured. */
const FIRST_REQUESTS: Record<
  string,
  (stack: LocalStack, newDoctor: () => string) => Promise<RequestInit & { path: string }>
> = {
  [HELLO.name]: () => Promise.resolve({ path: "/" }),
  "instagram-connect": async (stack, newDoctor) => ({
    path: "/instagram-connect",
    headers: { authorization: `Bearer ${await stack.jwt.sign({ sub: newDoctor() })}` },
  }),
  "instagram-callback": async (stack) => ({
    path: "/instagram-callback/deauthorize",
    method: "POST",
    body: new URLSearchParams({
      signed_request: await signedRequest(stack.env.INSTAGRAM_APP_SECRET, {
        algorithm: "HMAC-SHA256",
        issued_at: Math.floor(Date.now() / 1000),
        user_id: String(Math.floor(Math.random() * 1e15)),
      }),
    }),
  }),
};

// Every function of supabase/config.toml is bundled and measured; a cold start needs a first real
// request, which FIRST_REQUESTS defines per function (one without is named in the report, not measured).
const FUNCTIONS = edgeFunctions();
const FUNCTION_NAMES = FUNCTIONS.map((fn) => fn.name).filter((fn) => fn in FIRST_REQUESTS);
const ROOT = new URL("../", import.meta.url);

type Side = "real" | "floor";
type Counts = Record<string, number>;
interface Measured {
  flowMs: number[];
  failures: number;
  seconds: number;
  /** Graph calls by step, and database calls by function ("rpc claim_oauth_state"). */
  metaCalls: Counts;
  dbCalls: Counts;
  cpuMs: number;
}
type Form = "source" | "bundled";

const { host, why } = await chooseHost({ pglite: Deno.args.includes("--pglite") }).catch((error) => {
  console.error(`deno task bench: ${error.message}`);
  Deno.exit(1);
});
const name = `instagram_connect_bench_${Deno.pid}`;
const databaseUrl = await host.createDatabase(name);
const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
try {
  await migrate(databaseUrl);
  const stack = await startLocalStack({
    databaseUrl,
    metaLatencyMs: latencyMs,
    extraFunctions: [...FLOOR, WEBHOOK_FLOOR],
  });
  const bundles = await bundleAll();
  try {
    const results: Record<number, Record<Side, Measured>> = {};
    for (const c of CONCURRENCY) results[c] = await compare(stack, c === 1 ? Math.ceil(flows / 4) : flows, c);
    assertSameIo(results);
    const webhooks = await compareWebhooks(stack);
    const cold = await coldStarts(stack, bundles);
    report(results, webhooks, cold, bundles, await describeMachine(`${host.version} (${why})`));
  } finally {
    await stack.stop();
    await Deno.remove(bundles.dir, { recursive: true });
  }
} finally {
  await sql.end();
  await host.dropDatabase(name);
  await host.close();
}

/** `count` flows of each side at concurrency `c`, in ROUNDS alternating rounds. */
async function compare(stack: LocalStack, count: number, c: number): Promise<Record<Side, Measured>> {
  const empty = (): Measured => ({
    flowMs: [],
    failures: 0,
    seconds: 0,
    metaCalls: {},
    dbCalls: {},
    cpuMs: 0,
  });
  const pooled: Record<Side, Measured> = { real: empty(), floor: empty() };
  for (let round = 0; round < ROUNDS; round++) {
    const order: Side[] = round % 2 ? ["real", "floor"] : ["floor", "real"];
    for (const side of order) {
      const run = await measure(stack, side, Math.ceil(count / ROUNDS), c);
      const into = pooled[side];
      into.flowMs.push(...run.flowMs);
      into.failures += run.failures;
      into.seconds += run.seconds;
      into.cpuMs += run.cpuMs;
      for (const [key, n] of Object.entries(run.metaCalls)) {
        into.metaCalls[key] = (into.metaCalls[key] ?? 0) + n;
      }
      for (const [key, n] of Object.entries(run.dbCalls)) into.dbCalls[key] = (into.dbCalls[key] ?? 0) + n;
    }
  }
  return pooled;
}

/** `count` measured flows (after warm-up ones), each from a new doctor and a new Meta user, in a Worker. */
async function measure(stack: LocalStack, side: Side, count: number, c: number): Promise<Measured> {
  const doctorIds = await newDoctors(WARMUP_FLOWS + count);
  const plan: LoadPlan = {
    connectUrl: `${stack.url}/functions/v1/${side === "real" ? "instagram-connect" : FLOOR[0].name}`,
    flows: await Promise.all(doctorIds.map(async (id) => ({
      token: await stack.jwt.sign({ sub: id }),
      metaUser: stack.meta.newUser(1).userId,
    }))),
    warmup: WARMUP_FLOWS,
    concurrency: c,
  };
  const processes: FunctionProcess[] = side === "real"
    ? Object.values(stack.functions)
    : stack.extraFunctions.filter((fn) => FLOOR.some((floor) => floor.name === fn.name));
  const cpu = async () => (await Promise.all(processes.map((fn) => fn.cpuMs()))).reduce((a, b) => a + b, 0);
  const counts = () => ({
    meta: Object.fromEntries(Object.entries(stack.meta.calls).filter(([step]) => step !== "dialog")),
    db: Object.fromEntries(Object.entries(stack.dbCalls).filter(([key]) => key.startsWith("rpc "))),
  });

  const load = new Worker(new URL("./lib/load_generator.ts", import.meta.url), { type: "module" });
  const messages = new ReadableStream<LoadMessage>({
    start: (controller) => (load.onmessage = (event) => controller.enqueue(event.data)),
  }).getReader();
  load.postMessage(plan);
  await messages.read(); // warmed up
  const before = { ...counts(), cpu: await cpu() };
  load.postMessage("go");
  const { value: done } = await messages.read();
  load.terminate();
  if (done?.kind !== "done") throw new Error("the load generator stopped early");
  const after = { ...counts(), cpu: await cpu() };
  return {
    flowMs: done.flowMs,
    failures: done.failures,
    seconds: done.seconds,
    metaCalls: difference(after.meta, before.meta),
    dbCalls: difference(after.db, before.db),
    cpuMs: after.cpu - before.cpu,
  };
}

/**
 * The floor is a floor only if it does the same I/O: every flow completed, and per flow the same Graph
 * calls step by step and the same database functions, each as often.
 */
function assertSameIo(results: Record<number, Record<Side, Measured>>) {
  for (const [c, { real, floor }] of Object.entries(results)) {
    const perFlow = (m: Measured, counts: Counts) =>
      JSON.stringify(
        Object.entries(counts).filter(([, n]) => n > 0).sort().map(([key, n]) => [key, n / m.flowMs.length]),
      );
    const problems = [
      real.failures + floor.failures ? `${real.failures} real and ${floor.failures} floor flows failed` : "",
      perFlow(real, real.metaCalls) !== perFlow(floor, floor.metaCalls)
        ? `Graph calls per flow differ: real ${perFlow(real, real.metaCalls)}, floor ${
          perFlow(floor, floor.metaCalls)
        }`
        : "",
      perFlow(real, real.dbCalls) !== perFlow(floor, floor.dbCalls)
        ? `database calls per flow differ: real ${perFlow(real, real.dbCalls)}, floor ${
          perFlow(floor, floor.dbCalls)
        }`
        : "",
    ].filter(Boolean);
    if (problems.length) throw new Error(`concurrency ${c}: ${problems.join("; ")}`);
  }
}

interface WebhookMeasured extends WebhookRun {
  /** Deliveries timed, and store_instagram_events calls through the gateway (warm-up included). */
  rpcs: number;
  cpuMs: number;
}
interface WebhookResult {
  shape: WebhookShape;
  real: WebhookMeasured;
  floor: WebhookMeasured;
}
interface Webhooks {
  results: WebhookResult[];
  /** Rows stored for each side's account, counted in the table at the end. */
  rows: Record<Side, number>;
}

/**
 * instagram-webhook against its floor: each shape's deliveries on both sides, alternating in ROUNDS
 * rounds, through the same router (real and floor each with an account linked to a doctor of its own).
 * Every delivery is new (new mids), so every event is stored once on either side; the benchmark
 * refuses to report unless both sides answered every delivery 200 and stored the same number of rows.
 */
async function compareWebhooks(stack: LocalStack): Promise<Webhooks> {
  const accounts = { real: await linkedAccount(stack), floor: await linkedAccount(stack) };
  const urls = {
    real: stack.functionUrl("instagram-webhook"),
    floor: stack.functionUrl(WEBHOOK_FLOOR.name),
  };
  const processes = {
    real: stack.functions["instagram-webhook"],
    floor: stack.extraFunctions.find((fn) => fn.name === WEBHOOK_FLOOR.name)!,
  };
  const load = new Worker(new URL("./lib/webhook_load.ts", import.meta.url), { type: "module" });
  const send = (plan: WebhookPlan) =>
    new Promise<WebhookRun>((resolve) => {
      load.onmessage = (event) => resolve(event.data);
      load.postMessage(plan);
    });
  const rpcs = () => stack.dbCalls["rpc store_instagram_events"] ?? 0;
  let expectedRows = 0;
  try {
    const results: WebhookResult[] = [];
    for (const shape of WEBHOOK_SHAPES) {
      const empty = (): WebhookMeasured => ({
        ms: [],
        failures: 0,
        stored: 0,
        seconds: 0,
        rpcs: 0,
        cpuMs: 0,
      });
      const pooled: Record<Side, WebhookMeasured> = { real: empty(), floor: empty() };
      const perRound = Math.ceil(shape.deliveries / ROUNDS);
      for (let round = 0; round < ROUNDS; round++) {
        const order: Side[] = round % 2 ? ["real", "floor"] : ["floor", "real"];
        for (const side of order) {
          const deliveries = await signedDeliveries(
            stack,
            accounts[side],
            shape.events,
            shape.warmup + perRound,
          );
          const before = { rpcs: rpcs(), cpu: await processes[side].cpuMs() };
          const run = await send({
            url: urls[side],
            deliveries,
            warmup: shape.warmup,
            concurrency: shape.concurrency,
          });
          const into = pooled[side];
          into.ms.push(...run.ms);
          into.failures += run.failures;
          into.stored += run.stored;
          into.seconds += run.seconds;
          into.rpcs += rpcs() - before.rpcs;
          into.cpuMs += (await processes[side].cpuMs()) - before.cpu;
        }
        expectedRows += (shape.warmup + perRound) * shape.events;
      }
      results.push({ shape, ...pooled });
    }
    const counted = await sql<{ account_id: string; rows: number }[]>`
      select account_id, count(*)::int as rows from public.instagram_events
      where account_id in ${sql([accounts.real, accounts.floor])} group by account_id`;
    const rows = {
      real: counted.find((row) => row.account_id === accounts.real)?.rows ?? 0,
      floor: counted.find((row) => row.account_id === accounts.floor)?.rows ?? 0,
    };
    assertSameWebhookIo(results, rows, expectedRows);
    return { results, rows };
  } finally {
    load.terminate();
  }
}

/** A doctor with a link whose Instagram account is new, seeded as the demo's is: its account id. */
async function linkedAccount(stack: LocalStack): Promise<string> {
  const [doctorId] = await newDoctors(1);
  const digits = (n: number) => Array.from({ length: n }, () => Math.floor(Math.random() * 10)).join("");
  const [pageId, accountId] = [`19${digits(13)}`, `17849${digits(12)}`];
  await seedLink(sql, await tokenKeyringOf(stack.env), doctorId, {
    id: pageId,
    name: "Bench Practice",
    instagram: { id: accountId, username: `bench_${pageId}` },
  }, `EAAGbench${digits(24)}`);
  return accountId;
}

/** `count` deliveries of `events` direct messages each, every one with new mids, signed as Meta signs. */
async function signedDeliveries(stack: LocalStack, accountId: string, events: number, count: number) {
  const encoder = new TextEncoder();
  return await Promise.all(Array.from({ length: count }, async () => {
    const items = Array.from({ length: events }, (_, i) =>
      directMessage(
        accountId,
        String(7_000_000_000_000_000 + Math.floor(Math.random() * 1e15) + i),
        "Hello! Could I book a check-up for my daughter next Tuesday afternoon? Thank you.",
      ));
    const body = encoder.encode(JSON.stringify(instagramDelivery([{ accountId, items }])));
    return { body, signature: await webhookSignature(stack.env.INSTAGRAM_APP_SECRET, body) };
  }));
}

/**
 * The floor is a floor only if it does the same I/O: every delivery answered 200 on both sides, one
 * store_instagram_events call per delivery, and the same rows stored (every event once).
 */
function assertSameWebhookIo(results: WebhookResult[], rows: Record<Side, number>, expected: number) {
  const problems = results.flatMap(({ shape, real, floor }) => {
    const what = `${shape.events} event(s) per delivery`;
    return [
      real.failures + floor.failures
        ? `${what}: ${real.failures} real and ${floor.failures} floor deliveries failed`
        : "",
      real.rpcs !== floor.rpcs
        ? `${what}: ${real.rpcs} real and ${floor.rpcs} floor store_instagram_events calls`
        : "",
      real.stored !== floor.stored
        ? `${what}: real answered ${real.stored} stored, floor ${floor.stored}`
        : "",
    ];
  }).filter(Boolean);
  if (rows.real !== rows.floor || rows.real !== expected) {
    problems.push(`rows stored: real ${rows.real}, floor ${rows.floor}, events sent to each ${expected}`);
  }
  if (problems.length) throw new Error(`webhooks: ${problems.join("; ")}`);
}

interface Bundles {
  dir: string;
  /** Minified bundle per function (and the hello world). */
  files: Record<string, string>;
  /** Size of the minified bundle, and of the same bundle unminified. */
  kb: Record<string, number>;
  unminifiedKb: Record<string, number>;
}

async function bundleAll(): Promise<Bundles> {
  const dir = await Deno.makeTempDir({ prefix: "bench-bundles-" });
  const bundles: Bundles = { dir, files: {}, kb: {}, unminifiedKb: {} };
  const bundle = async (entry: string, out: string, minify: boolean) => {
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["bundle", "--quiet", ...(minify ? ["--minify"] : []), entry, "-o", out],
      cwd: ROOT,
    }).output();
    if (!output.success) throw new Error(`deno bundle ${entry}: ${new TextDecoder().decode(output.stderr)}`);
    return Math.round((await Deno.stat(out)).size / 1024);
  };
  for (const [fn, entry] of Object.entries(sourceEntries())) {
    bundles.files[fn] = `${dir}/${fn}.js`;
    bundles.kb[fn] = await bundle(entry, bundles.files[fn], true);
    bundles.unminifiedKb[fn] = await bundle(entry, `${dir}/${fn}.unminified.js`, false);
  }
  return bundles;
}

function sourceEntries(): Record<string, string> {
  return {
    [HELLO.name]: HELLO.entry,
    ...Object.fromEntries(FUNCTIONS.map((fn) => [fn.name, fn.entrypoint])),
  };
}

/**
 * Spawn to the first real answer, median of COLD_STARTS, the three taking turns: the hello world's
 * greeting; connect starting a flow for a signed-in doctor (JWT verified, a state recorded: 200);
 * the callback taking Meta's deauthorize for a user (signed_request verified, a database call: 200).
 * Each from source (what `deno serve` and `supabase functions serve` start) and from the minified
 * bundle (no module resolution at start: a lower bound).
 */
async function coldStarts(stack: LocalStack, bundles: Bundles): Promise<Record<Form, Counts>> {
  const doctors = await newDoctors(COLD_STARTS * 2);
  const firstRequest = (fn: string) => FIRST_REQUESTS[fn](stack, () => doctors.pop()!);
  const entries: Record<Form, Record<string, string>> = { source: sourceEntries(), bundled: bundles.files };
  const samples: Record<Form, Record<string, number[]>> = { source: {}, bundled: {} };
  for (let i = 0; i < COLD_STARTS; i++) {
    for (const form of ["source", "bundled"] as const) {
      for (const [fn, entry] of Object.entries(entries[form])) {
        if (!(fn in FIRST_REQUESTS)) continue;
        const { path, ...init } = await firstRequest(fn);
        const started = performance.now();
        const process = await startFunction(fn, stack.env, { entry });
        const response = await fetch(`${process.url}${path}`, init);
        await response.body?.cancel();
        const ms = performance.now() - started;
        await process.stop();
        if (response.status !== 200) throw new Error(`cold start of ${fn} (${form}): ${response.status}`);
        (samples[form][fn] ??= []).push(ms);
      }
    }
  }
  const medians = (form: Form) =>
    Object.fromEntries(Object.entries(samples[form]).map(([fn, values]) => [fn, percentile(values, 50)]));
  return { source: medians("source"), bundled: medians("bundled") };
}

async function newDoctors(count: number): Promise<string[]> {
  const ids = Array.from({ length: count }, () => crypto.randomUUID());
  await sql`insert into auth.users ${sql(ids.map((id) => ({ id })))}`;
  return ids;
}

async function describeMachine(database: string): Promise<string> {
  const cpuinfo = await Deno.readTextFile("/proc/cpuinfo").catch(() => "");
  const model = cpuinfo.match(/model name\s*:\s*(.+)/)?.[1]?.trim() ?? Deno.build.arch;
  const gib = Math.round(Deno.systemMemoryInfo().total / 2 ** 30);
  return `${model}, ${navigator.hardwareConcurrency} cores, ${gib} GiB; Deno ${Deno.version.deno}; ${database}`;
}

function report(
  results: Record<number, Record<Side, Measured>>,
  webhooks: Webhooks,
  cold: Record<Form, Counts>,
  bundles: Bundles,
  machine: string,
) {
  const sum = (counts: Counts) => Object.values(counts).reduce((a, b) => a + b, 0);
  const perFlow = (m: Measured, value: number) => round(value / m.flowMs.length, 2);
  const [real16, floor16] = [results[16].real, results[16].floor];
  const ratio = (c: number) => round(p(results[c].real, 50) / p(results[c].floor, 50), 3);
  const coldRatio = (form: Form) =>
    round(Math.max(...FUNCTION_NAMES.map((fn) => cold[form][fn])) / cold[form][HELLO.name], 2);
  const failures = Object.values(results).reduce((n, r) => n + r.real.failures + r.floor.failures, 0);

  console.log(`\n${machine}`);
  console.log(
    `flow = connect + callback + finish; +${latencyMs} ms per Graph call; ${
      perFlow(real16, sum(real16.metaCalls))
    } Graph calls and ${
      perFlow(real16, sum(real16.dbCalls))
    } database calls per flow (the floor makes the same)\n`,
  );
  console.log("               flows  real p50  floor p50  overhead  real p99  floor p99  flows/s");
  for (const c of CONCURRENCY) {
    const { real, floor } = results[c];
    console.log(
      `  concurrency ${String(c).padEnd(2)} ${pad(real.flowMs.length, 5)} ${pad(p(real, 50), 6)} ms ${
        pad(p(floor, 50), 6)
      } ms  ${pad(ratio(c), 8)} ${pad(p(real, 99), 6)} ms ${pad(p(floor, 99), 6)} ms ${
        pad(round(real.flowMs.length / real.seconds), 8)
      }`,
    );
  }
  console.log(
    `  (overhead = real p50 / floor p50; targets <= 1.05 at concurrency 1, <= 1.10 at 16); ${failures} flows failed`,
  );
  console.log(
    `\nCPU per flow, function processes (concurrency 16): real ${perFlow(real16, real16.cpuMs)} ms, floor ${
      perFlow(floor16, floor16.cpuMs)
    } ms`,
  );
  for (const form of ["source", "bundled"] as const) {
    console.log(
      `cold start, ${form.padEnd(7)} (spawn to first real answer, median of ${COLD_STARTS}): hello ${
        round(cold[form][HELLO.name])
      } ms, ${FUNCTION_NAMES.map((fn) => `${fn} ${round(cold[form][fn])} ms`).join(", ")}; ratio ${
        coldRatio(form)
      } (target <= 1.5)`,
    );
  }
  console.log(
    `loaded code (one bundle, libraries included; minified / unminified): ${
      FUNCTIONS.map(({ name: fn }) => `${fn} ${bundles.kb[fn]} / ${bundles.unminifiedKb[fn]} KB`).join(", ")
    }`,
  );
  const [small, , large] = webhooks.results;
  const hook = (side: Side, result: WebhookResult, rank: number) => round(percentile(result[side].ms, rank));
  const eventsPerS = (side: Side, result: WebhookResult) =>
    Math.round(result[side].ms.length * result.shape.events / result[side].seconds);
  const webhookRatio = round(hook("real", small, 50) / hook("floor", small, 50), 3);
  console.log(
    `\ninstagram-webhook against its floor (signature, JSON.parse, the same RPC storing the same rows); ${webhooks.rows.real} rows stored by each side`,
  );
  console.log(
    "  events/delivery  concurrency  deliveries  real p50  floor p50  overhead  real p99  floor p99  events/s real / floor  CPU ms/delivery real / floor",
  );
  for (const result of webhooks.results) {
    const { shape, real, floor } = result;
    console.log(
      `  ${pad(shape.events, 15)}  ${pad(shape.concurrency, 11)}  ${pad(real.ms.length, 10)} ${
        pad(hook("real", result, 50), 6)
      } ms ${pad(hook("floor", result, 50), 6)} ms  ${
        pad(round(hook("real", result, 50) / hook("floor", result, 50), 3), 8)
      } ${pad(hook("real", result, 99), 6)} ms ${pad(hook("floor", result, 99), 6)} ms  ${
        pad(eventsPerS("real", result), 10)
      } / ${String(eventsPerS("floor", result)).padEnd(10)} ${
        pad(round(real.cpuMs / real.ms.length, 2), 8)
      } / ${round(floor.cpuMs / floor.ms.length, 2)}`,
    );
  }
  console.log(
    "  (overhead = real p50 / floor p50, target <= 1.10 with one event per delivery; a 1000-event delivery well under 1 s)",
  );
  const unmeasured = FUNCTIONS.map((fn) => fn.name).filter((fn) => !(fn in FIRST_REQUESTS));
  if (unmeasured.length) {
    console.log(
      `cold start not measured for ${unmeasured.join(", ")}: bench.ts defines no first request for it`,
    );
  }

  const figures = {
    flows,
    meta_latency_ms: latencyMs,
    failures,
    overhead_ratio_c1: ratio(1),
    overhead_ratio_c16: ratio(16),
    flow_p50_ms_c1: p(results[1].real, 50),
    floor_p50_ms_c1: p(results[1].floor, 50),
    flow_p50_ms_c16: p(real16, 50),
    floor_p50_ms_c16: p(floor16, 50),
    flow_p99_ms_c16: p(real16, 99),
    flows_per_s_c16: round(real16.flowMs.length / real16.seconds),
    cold_start_ratio: coldRatio("source"),
    cold_start_ratio_bundled: coldRatio("bundled"),
    cold_start_hello_ms: round(cold.source[HELLO.name]),
    cold_start_connect_ms: round(cold.source["instagram-connect"]),
    cold_start_callback_ms: round(cold.source["instagram-callback"]),
    cpu_ms_per_flow: perFlow(real16, real16.cpuMs),
    floor_cpu_ms_per_flow: perFlow(floor16, floor16.cpuMs),
    meta_calls_per_flow: perFlow(real16, sum(real16.metaCalls)),
    db_calls_per_flow: perFlow(real16, sum(real16.dbCalls)),
    loaded_kb_connect: bundles.kb["instagram-connect"],
    loaded_kb_callback: bundles.kb["instagram-callback"],
    unminified_kb_connect: bundles.unminifiedKb["instagram-connect"],
    unminified_kb_callback: bundles.unminifiedKb["instagram-callback"],
    webhook_overhead_ratio: webhookRatio,
    webhook_p50_ms_batch1: hook("real", small, 50),
    webhook_floor_p50_ms_batch1: hook("floor", small, 50),
    webhook_events_per_s: eventsPerS("real", webhooks.results[1]),
    webhook_floor_events_per_s: eventsPerS("floor", webhooks.results[1]),
    webhook_p99_ms_batch1000: hook("real", large, 99),
    webhook_floor_p99_ms_batch1000: hook("floor", large, 99),
    webhook_rows_real: webhooks.rows.real,
    webhook_rows_floor: webhooks.rows.floor,
  };
  console.log(`\n${Object.entries(figures).map(([key, value]) => `${key}=${value}`).join(" ")}`);
}

function difference(after: Counts, before: Counts): Counts {
  return Object.fromEntries(Object.entries(after).map(([key, n]) => [key, n - (before[key] ?? 0)]));
}

function p(measured: Measured, percentileRank: number): number {
  return round(percentile(measured.flowMs, percentileRank));
}

function percentile(values: number[], rank: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((rank / 100) * sorted.length) - 1)] ?? NaN;
}

function round(value: number, digits = 1): number {
  return Number(value.toFixed(digits));
}

function pad(value: number, width: number): string {
  return String(value).padStart(width);
}

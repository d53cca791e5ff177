// `deno task bench [flows=400] [concurrency=16] [latency_ms=25] [--pglite]`
// The whole link flow (connect, callback, finish) of the real functions, against its floor measured in
// the same run: scripts/bench/floor_function.ts does the same Meta calls and database round trips,
// through the same router, gateway and fake Meta (+latency_ms per Graph call), with none of our logic.
// overhead_ratio = real flow p50 / floor flow p50, at concurrency 1 and at `concurrency`; the two
// alternate in rounds so that drift of the machine falls on both. Then CPU per flow of the function
// processes, cold start against a hello-world `deno serve` started the same way, and the code loaded
// per function. Prints a table; the last line holds the figures as key=value.
import postgres from "postgres";
import { chooseHost, migrate } from "./lib/database.ts";
import { type FunctionProcess, startFunction } from "./lib/function_process.ts";
import type { LoadMessage, LoadPlan } from "./lib/load_generator.ts";
import { FUNCTION_NAMES, type LocalStack, startLocalStack } from "./lib/local_stack.ts";

const numbers = Deno.args.filter((arg) => arg !== "--pglite");
const [flows, concurrency, latencyMs] = [numbers[0] ?? 400, numbers[1] ?? 16, numbers[2] ?? 25].map(Number);
const ROUNDS = 2;
const WARMUP_FLOWS = 20;
const COLD_STARTS = 5;
const FLOOR = { name: "bench-floor", entry: "scripts/bench/floor_function.ts" };
const HELLO = { name: "hello", entry: "scripts/bench/hello_function.ts" };
const ROOT = new URL("../", import.meta.url);

type Side = "real" | "floor";
interface Measured {
  flowMs: number[];
  failures: number;
  seconds: number;
  metaCalls: number;
  dbCalls: number;
  cpuMs: number;
}

const { host } = await chooseHost({ pglite: Deno.args.includes("--pglite") }).catch((error) => {
  console.error(`deno task bench: ${error.message}`);
  Deno.exit(1);
});
const name = `instagram_connect_bench_${Deno.pid}`;
const databaseUrl = await host.createDatabase(name);
try {
  await migrate(databaseUrl);
  const stack = await startLocalStack({ databaseUrl, metaLatencyMs: latencyMs, extraFunctions: [FLOOR] });
  const bundles = await bundleAll();
  try {
    const results: Record<number, Record<Side, Measured>> = {};
    for (const c of [1, concurrency]) results[c] = await compare(stack, c === 1 ? flows / 4 : flows, c);
    assertSameIo(results);
    const cold = await coldStarts(bundles, stack.env);
    report(results, cold, bundles, await describeMachine(host.version));
  } finally {
    await stack.stop();
    await Deno.remove(bundles.dir, { recursive: true });
  }
} finally {
  await host.dropDatabase(name);
  await host.close();
}

/** `count` flows of each side at concurrency `c`, in ROUNDS alternating rounds. */
async function compare(stack: LocalStack, count: number, c: number): Promise<Record<Side, Measured>> {
  const empty = (): Measured => ({ flowMs: [], failures: 0, seconds: 0, metaCalls: 0, dbCalls: 0, cpuMs: 0 });
  const pooled: Record<Side, Measured> = { real: empty(), floor: empty() };
  for (let round = 0; round < ROUNDS; round++) {
    const order: Side[] = round % 2 ? ["real", "floor"] : ["floor", "real"];
    for (const side of order) {
      const run = await measure(stack, side, Math.ceil(count / ROUNDS), c);
      const into = pooled[side];
      into.flowMs.push(...run.flowMs);
      into.failures += run.failures;
      into.seconds += run.seconds;
      into.metaCalls += run.metaCalls;
      into.dbCalls += run.dbCalls;
      into.cpuMs += run.cpuMs;
    }
  }
  return pooled;
}

/** `count` measured flows (after warm-up ones), each from a new doctor and a new Meta user, in a Worker. */
async function measure(stack: LocalStack, side: Side, count: number, c: number): Promise<Measured> {
  const doctorIds = Array.from({ length: WARMUP_FLOWS + count }, () => crypto.randomUUID());
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  await sql`insert into auth.users ${sql(doctorIds.map((id) => ({ id })))}`;
  await sql.end();
  const plan: LoadPlan = {
    connectUrl: `${stack.url}/functions/v1/${side === "real" ? "instagram-connect" : FLOOR.name}`,
    flows: await Promise.all(doctorIds.map(async (id) => ({
      token: await stack.jwt.sign({ sub: id }),
      metaUser: stack.meta.newUser(1).userId,
    }))),
    warmup: WARMUP_FLOWS,
    concurrency: c,
  };
  const processes: FunctionProcess[] = side === "real"
    ? Object.values(stack.functions)
    : stack.extraFunctions.filter((fn) => fn.name === FLOOR.name);
  const cpu = async () => (await Promise.all(processes.map((fn) => fn.cpuMs()))).reduce((a, b) => a + b, 0);
  const metaCalls = () =>
    Object.entries(stack.meta.calls).reduce((sum, [step, n]) => step === "dialog" ? sum : sum + n, 0);

  const load = new Worker(new URL("./lib/load_generator.ts", import.meta.url), { type: "module" });
  const messages = new ReadableStream<LoadMessage>({
    start: (controller) => (load.onmessage = (event) => controller.enqueue(event.data)),
  }).getReader();
  load.postMessage(plan);
  await messages.read(); // warmed up
  const before = { meta: metaCalls(), db: stack.dbCalls.rpc ?? 0, cpu: await cpu() };
  load.postMessage("go");
  const { value: done } = await messages.read();
  load.terminate();
  if (done?.kind !== "done") throw new Error("the load generator stopped early");
  return {
    flowMs: done.flowMs,
    failures: done.failures,
    seconds: done.seconds,
    metaCalls: metaCalls() - before.meta,
    dbCalls: (stack.dbCalls.rpc ?? 0) - before.db,
    cpuMs: (await cpu()) - before.cpu,
  };
}

/** The floor is a floor only if it does the same I/O: same calls per flow, and every flow completed. */
function assertSameIo(results: Record<number, Record<Side, Measured>>) {
  for (const [c, { real, floor }] of Object.entries(results)) {
    const per = (m: Measured, value: number) => value / m.flowMs.length;
    const problems = [
      real.failures + floor.failures ? `${real.failures} real and ${floor.failures} floor flows failed` : "",
      per(real, real.metaCalls) !== per(floor, floor.metaCalls)
        ? "the floor's Meta calls per flow differ"
        : "",
      per(real, real.dbCalls) !== per(floor, floor.dbCalls)
        ? "the floor's database calls per flow differ"
        : "",
    ].filter(Boolean);
    if (problems.length) throw new Error(`concurrency ${c}: ${problems.join("; ")}`);
  }
}

interface Bundles {
  dir: string;
  /** Minified bundle per function (and the hello world), as a deploy ships the code. */
  files: Record<string, string>;
  kb: Record<string, number>;
}

async function bundleAll(): Promise<Bundles> {
  const dir = await Deno.makeTempDir({ prefix: "bench-bundles-" });
  const files: Record<string, string> = {};
  const kb: Record<string, number> = {};
  for (
    const [fn, entry] of [...FUNCTION_NAMES.map((fn) => [fn, `supabase/functions/${fn}/index.ts`]), [
      HELLO.name,
      HELLO.entry,
    ]]
  ) {
    files[fn] = `${dir}/${fn}.js`;
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["bundle", "--quiet", "--minify", entry, "-o", files[fn]],
      cwd: ROOT,
    }).output();
    if (!output.success) throw new Error(`deno bundle ${entry}: ${new TextDecoder().decode(output.stderr)}`);
    kb[fn] = Math.round((await Deno.stat(files[fn])).size / 1024);
  }
  return { dir, files, kb };
}

/**
 * Spawn to first answered request, median of COLD_STARTS, the three functions taking turns: from source
 * (what `deno serve` and `supabase functions serve` run) and from the bundle (what a deploy runs).
 */
async function coldStarts(bundles: Bundles, env: Record<string, string>) {
  const entries = {
    source: {
      [HELLO.name]: HELLO.entry,
      ...Object.fromEntries(FUNCTION_NAMES.map((fn) => [fn, `supabase/functions/${fn}/index.ts`])),
    },
    bundled: bundles.files,
  };
  const samples: Record<string, Record<string, number[]>> = { source: {}, bundled: {} };
  for (let i = 0; i < COLD_STARTS; i++) {
    for (const [form, byName] of Object.entries(entries)) {
      for (const [fn, entry] of Object.entries(byName)) {
        const started = performance.now();
        const process = await startFunction(fn, env, { entry });
        const response = await fetch(`${process.url}/${fn}`);
        await response.body?.cancel();
        (samples[form][fn] ??= []).push(performance.now() - started);
        await process.stop();
      }
    }
  }
  const median = (form: string, fn: string) => percentile(samples[form][fn], 50);
  return Object.fromEntries(
    Object.keys(entries).map((form) => [
      form,
      Object.fromEntries([HELLO.name, ...FUNCTION_NAMES].map((fn) => [fn, median(form, fn)])),
    ]),
  ) as Record<"source" | "bundled", Record<string, number>>;
}

async function describeMachine(database: string): Promise<string> {
  const cpuinfo = await Deno.readTextFile("/proc/cpuinfo").catch(() => "");
  const model = cpuinfo.match(/model name\s*:\s*(.+)/)?.[1]?.trim() ?? Deno.build.arch;
  const gib = Math.round(Deno.systemMemoryInfo().total / 2 ** 30);
  return `${model}, ${navigator.hardwareConcurrency} cores, ${gib} GiB; Deno ${Deno.version.deno}; ${database}`;
}

function report(
  results: Record<number, Record<Side, Measured>>,
  cold: Record<"source" | "bundled", Record<string, number>>,
  bundles: Bundles,
  machine: string,
) {
  const perFlow = (m: Measured, value: number) => round(value / m.flowMs.length, 2);
  const real = results[concurrency].real;
  const ratio = (c: number) => round(p(results[c].real, 50) / p(results[c].floor, 50), 3);
  const coldRatio = (form: "source" | "bundled") =>
    round(Math.max(...FUNCTION_NAMES.map((fn) => cold[form][fn])) / cold[form][HELLO.name], 2);
  const failures = Object.values(results).flatMap((r) => [r.real.failures, r.floor.failures]).reduce((a, b) =>
    a + b
  );
  console.log(`\n${machine}`);
  console.log(
    `flow = connect + callback + finish; +${latencyMs} ms per Graph call; ${
      perFlow(real, real.metaCalls)
    } Graph calls and ${perFlow(real, real.dbCalls)} database calls per flow (the floor makes the same)\n`,
  );
  console.log("               flows  real p50  floor p50  overhead  real p99  floor p99  flows/s");
  for (const c of Object.keys(results).map(Number)) {
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
    `  (overhead = real p50 / floor p50; targets <= 1.05 at concurrency 1, <= 1.10 at ${concurrency}); ${failures} flows failed`,
  );
  console.log(
    `\nCPU per flow, function processes (concurrency ${concurrency}): real ${
      perFlow(real, real.cpuMs)
    } ms, floor ${perFlow(results[concurrency].floor, results[concurrency].floor.cpuMs)} ms`,
  );
  for (const form of ["bundled", "source"] as const) {
    console.log(
      `cold start, ${form.padEnd(7)} (spawn to first answer, median of ${COLD_STARTS}): hello ${
        round(cold[form][HELLO.name])
      } ms, ${FUNCTION_NAMES.map((fn) => `${fn} ${round(cold[form][fn])} ms`).join(", ")}; ratio ${
        coldRatio(form)
      } (target <= 1.5)`,
    );
  }
  console.log(
    `loaded code (minified bundle): ${FUNCTION_NAMES.map((fn) => `${fn} ${bundles.kb[fn]} KB`).join(", ")}`,
  );

  const figures = {
    flows,
    concurrency,
    meta_latency_ms: latencyMs,
    failures,
    overhead_ratio_c1: ratio(1),
    [`overhead_ratio_c${concurrency}`]: ratio(concurrency),
    flow_p50_ms_c1: round(p(results[1].real, 50)),
    floor_p50_ms_c1: round(p(results[1].floor, 50)),
    [`flow_p50_ms_c${concurrency}`]: round(p(real, 50)),
    [`floor_p50_ms_c${concurrency}`]: round(p(results[concurrency].floor, 50)),
    [`flow_p99_ms_c${concurrency}`]: round(p(real, 99)),
    flows_per_s: round(real.flowMs.length / real.seconds),
    cold_start_ratio: coldRatio("bundled"),
    cold_start_ratio_source: coldRatio("source"),
    cold_start_hello_ms: round(cold.bundled[HELLO.name]),
    cold_start_connect_ms: round(cold.bundled["instagram-connect"]),
    cold_start_callback_ms: round(cold.bundled["instagram-callback"]),
    cpu_ms_per_flow: perFlow(real, real.cpuMs),
    floor_cpu_ms_per_flow: perFlow(results[concurrency].floor, results[concurrency].floor.cpuMs),
    meta_calls_per_flow: perFlow(real, real.metaCalls),
    db_calls_per_flow: perFlow(real, real.dbCalls),
    loaded_kb_connect: bundles.kb["instagram-connect"],
    loaded_kb_callback: bundles.kb["instagram-callback"],
  };
  console.log(`\n${Object.entries(figures).map(([key, value]) => `${key}=${value}`).join(" ")}`);
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

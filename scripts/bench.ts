// `deno task bench [flows=500] [concurrency=16] [latency_ms=25]`
// The real functions against the fake Meta (a fixed added latency per Graph call) and the real
// database, through the same local API origin as the tests. Prints latency percentiles, throughput,
// calls per callback, the overhead ratio, cold starts and module graph sizes; the last line holds
// the figures as key=value.
// A second, shorter run at concurrency 1 separates the functions' own overhead from what 16 flows
// at once cost on this machine, where everything (functions, database, fake Meta, gateway and the
// load generator) shares the same cores.
import postgres from "postgres";
import { createDatabase, dropDatabase, ensurePostgres, migrate } from "./lib/database.ts";
import { FUNCTION_NAMES, type LocalStack, startLocalStack } from "./lib/local_stack.ts";
import { startFunction } from "./lib/function_process.ts";
import type { LoadMessage, LoadPlan } from "./lib/load_generator.ts";

const [flows, concurrency, latencyMs] = [Deno.args[0] ?? 500, Deno.args[1] ?? 16, Deno.args[2] ?? 25].map(
  Number,
);
const WARMUP_FLOWS = 20;
const UNLOADED_FLOWS = 100;

await ensurePostgres();
const name = `instagram_connect_bench_${Deno.pid}`;
const databaseUrl = await createDatabase(name);
try {
  await migrate(databaseUrl);
  const stack = await startLocalStack({ databaseUrl, metaLatencyMs: latencyMs });
  try {
    const loaded = await measure(stack, flows, concurrency);
    const unloaded = await measure(stack, UNLOADED_FLOWS, 1);
    const coldStarts = await Promise.all(FUNCTION_NAMES.map((fn) => coldStart(fn, stack.env)));
    const graphs = await Promise.all(FUNCTION_NAMES.map(moduleGraph));

    const figures = {
      flows,
      concurrency,
      meta_latency_ms: latencyMs,
      failures: loaded.failures + unloaded.failures,
      connect_p50_ms: loaded.connectP50,
      connect_p99_ms: loaded.connectP99,
      callback_p50_ms: loaded.callbackP50,
      callback_p99_ms: loaded.callbackP99,
      flows_per_s: loaded.flowsPerSecond,
      meta_calls_per_callback: loaded.metaPerCallback,
      db_calls_per_callback: loaded.dbPerCallback,
      overhead_ratio: loaded.overheadRatio,
      c1_connect_p99_ms: unloaded.connectP99,
      c1_callback_p50_ms: unloaded.callbackP50,
      c1_overhead_ratio: unloaded.overheadRatio,
      cold_start_connect_ms: round(coldStarts[0]),
      cold_start_callback_ms: round(coldStarts[1]),
      graph_connect_kb: graphs[0].kb,
      graph_connect_modules: graphs[0].modules,
      graph_connect_npm_packages: graphs[0].packages,
      graph_connect_bundle_kb: graphs[0].bundleKb,
      graph_callback_kb: graphs[1].kb,
      graph_callback_modules: graphs[1].modules,
      graph_callback_npm_packages: graphs[1].packages,
      graph_callback_bundle_kb: graphs[1].bundleKb,
    };
    console.log(
      `\n${flows} connect + callback flows, concurrency ${concurrency}, +${latencyMs} ms per Meta call\n`,
    );
    console.log(
      `  connect    p50 ${loaded.connectP50} ms   p99 ${loaded.connectP99} ms   (target p99 < 15 ms)`,
    );
    console.log(`  callback   p50 ${loaded.callbackP50} ms   p99 ${loaded.callbackP99} ms`);
    console.log(`  throughput ${loaded.flowsPerSecond} flows/s, ${figures.failures} failed`);
    console.log(
      `  per callback: ${loaded.metaPerCallback} Meta calls, ${loaded.dbPerCallback} database calls`,
    );
    console.log(
      `  overhead ratio ${loaded.overheadRatio} (callback p50 / (Meta calls x ${latencyMs} ms); target <= 1.10)`,
    );
    console.log(
      `  at concurrency 1 (${UNLOADED_FLOWS} flows): connect p99 ${unloaded.connectP99} ms, callback p50 ${unloaded.callbackP50} ms, overhead ratio ${unloaded.overheadRatio}`,
    );
    console.log(
      `  cold start connect ${figures.cold_start_connect_ms} ms, callback ${figures.cold_start_callback_ms} ms (target < 200 ms)`,
    );
    for (const [index, fn] of FUNCTION_NAMES.entries()) {
      const graph = graphs[index];
      console.log(
        `  module graph ${fn}: our code ${graph.kb} KB in ${graph.modules} modules + ${graph.packages} npm packages; ${graph.bundleKb} KB loaded in all (bundled)`,
      );
    }
    console.log(`\n${Object.entries(figures).map(([key, value]) => `${key}=${value}`).join(" ")}`);
  } finally {
    await stack.stop();
  }
} finally {
  await dropDatabase(name);
}

/** `count` measured flows (after the warm-up ones) from new doctors and new Meta users, in a Worker. */
async function measure(stack: LocalStack, count: number, concurrency: number) {
  const doctorIds = Array.from({ length: WARMUP_FLOWS + count }, () => crypto.randomUUID());
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  await sql`insert into auth.users ${sql(doctorIds.map((id) => ({ id })))}`;
  await sql.end();
  const plan: LoadPlan = {
    connectUrl: stack.functionUrl("instagram-connect"),
    flows: await Promise.all(doctorIds.map(async (id) => ({
      token: await stack.jwt.sign({ sub: id }),
      metaUser: stack.meta.newUser(1).userId,
    }))),
    warmup: WARMUP_FLOWS,
    concurrency,
  };

  const load = new Worker(new URL("./lib/load_generator.ts", import.meta.url), { type: "module" });
  const messages = new ReadableStream<LoadMessage>({
    start: (controller) => (load.onmessage = (event) => controller.enqueue(event.data)),
  }).getReader();
  load.postMessage(plan);
  await messages.read(); // warmed up
  stack.meta.resetCounts();
  const rpcBefore = stack.dbCalls.rpc ?? 0;
  load.postMessage("go");
  const { value: done } = await messages.read();
  load.terminate();
  if (done?.kind !== "done") throw new Error("the load generator stopped early");

  const { code_exchange, token_exchange, list_pages } = stack.meta.calls;
  const metaPerCallback = (code_exchange + token_exchange + list_pages) / count;
  // Each flow's connect makes 1 RPC (create_oauth_state) and its finish 2 (open, link); the rest
  // belong to the callback.
  const dbPerCallback = ((stack.dbCalls.rpc ?? 0) - rpcBefore - 3 * count) / count;
  const callbackP50 = percentile(done.callbackMs, 50);
  return {
    failures: done.failures,
    connectP50: round(percentile(done.connectMs, 50)),
    connectP99: round(percentile(done.connectMs, 99)),
    callbackP50: round(callbackP50),
    callbackP99: round(percentile(done.callbackMs, 99)),
    flowsPerSecond: round(count / done.seconds),
    metaPerCallback: round(metaPerCallback),
    dbPerCallback: round(dbPerCallback),
    overheadRatio: round(callbackP50 / (metaPerCallback * latencyMs), 3),
  };
}

/** New process to first answered request (median of 3). */
async function coldStart(name: string, env: Record<string, string>): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < 3; i++) {
    const started = performance.now();
    const fn = await startFunction(name, env);
    const response = await fetch(`${fn.url}/${name}`);
    await response.body?.cancel();
    samples.push(performance.now() - started);
    await fn.stop();
  }
  return percentile(samples, 50);
}

/** Our modules (count, KB), the npm packages they import, and everything loaded, bundled into one file. */
async function moduleGraph(
  name: string,
): Promise<{ kb: number; modules: number; packages: number; bundleKb: number }> {
  const entry = `supabase/functions/${name}/index.ts`;
  const deno = async (...args: string[]) => {
    const output = await new Deno.Command(Deno.execPath(), { args, cwd: new URL("../", import.meta.url) })
      .output();
    if (!output.success) {
      throw new Error(`deno ${args[0]} failed: ${new TextDecoder().decode(output.stderr)}`);
    }
    return new TextDecoder().decode(output.stdout);
  };
  const modules: { kind: string; size?: number; specifier: string }[] =
    JSON.parse(await deno("info", "--json", entry)).modules;
  const own = modules.filter((module) => module.kind === "esm");
  const packages = new Set(
    modules.filter((module) => module.kind === "npm").map((module) =>
      module.specifier.match(/^npm:\/?((?:@[^/]+\/)?[^@/]+)/)?.[1]
    ),
  );
  const bundle = await Deno.makeTempFile({ suffix: ".js" });
  try {
    await deno("bundle", "--quiet", entry, "-o", bundle);
    return {
      kb: Math.round(own.reduce((sum, module) => sum + (module.size ?? 0), 0) / 1024),
      modules: own.length,
      packages: packages.size,
      bundleKb: Math.round((await Deno.stat(bundle)).size / 1024),
    };
  } finally {
    await Deno.remove(bundle);
  }
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

function round(value: number, digits = 1): number {
  return Number(value.toFixed(digits));
}

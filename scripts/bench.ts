// `deno task bench [flows=500] [concurrency=16] [latency_ms=25]`
// The real functions against the fake Meta (a fixed added latency per Graph call) and the real
// database, through the same local API origin as the tests. Prints latency percentiles, throughput,
// calls per callback, the overhead ratio, cold starts and module graph sizes; the last line holds
// the figures as key=value.
import postgres from "postgres";
import { createDatabase, dropDatabase, ensurePostgres, migrate } from "./lib/database.ts";
import { FUNCTION_NAMES, startLocalStack } from "./lib/local_stack.ts";
import { startFunction } from "./lib/function_process.ts";

const [flows, concurrency, latencyMs] = [Deno.args[0] ?? 500, Deno.args[1] ?? 16, Deno.args[2] ?? 25].map(Number);

await ensurePostgres();
const name = `instagram_connect_bench_${Deno.pid}`;
const databaseUrl = await createDatabase(name);
try {
  await migrate(databaseUrl);
  const sql = postgres(databaseUrl, { max: 2, onnotice: () => {} });
  const doctorIds = Array.from({ length: flows + 20 }, () => crypto.randomUUID());
  await sql`insert into auth.users ${sql(doctorIds.map((id) => ({ id })))}`;
  await sql.end();

  const stack = await startLocalStack({ databaseUrl, metaLatencyMs: latencyMs });
  try {
    const tokens = await Promise.all(doctorIds.map((id) => stack.jwt.sign({ sub: id })));
    const connectTimes: number[] = [];
    const callbackTimes: number[] = [];
    let failures = 0;

    const flow = async (index: number, record: boolean) => {
      const started = performance.now();
      const response = await fetch(stack.functionUrl("instagram-connect"), {
        headers: { authorization: `Bearer ${tokens[index]}` },
      });
      const { url } = await response.json();
      const connectMs = performance.now() - started;
      const redirect = await stack.meta.approve(url, stack.meta.newUser(1).userId);
      const callbackStarted = performance.now();
      const result = await fetch(redirect, { redirect: "manual" });
      await result.body?.cancel();
      const callbackMs = performance.now() - callbackStarted;
      if (result.status !== 200) failures++;
      if (record) {
        connectTimes.push(connectMs);
        callbackTimes.push(callbackMs);
      }
    };

    for (let i = 0; i < 20; i++) await flow(flows + i, false); // warm-up: JIT, pools, caches
    stack.meta.resetCounts();
    const rpcBefore = stack.dbCalls.rpc ?? 0;

    const started = performance.now();
    let next = 0;
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (next < flows) await flow(next++, true);
    }));
    const seconds = (performance.now() - started) / 1000;

    const { code_exchange, token_exchange, list_pages } = stack.meta.calls;
    const metaPerCallback = (code_exchange + token_exchange + list_pages) / flows;
    // Each flow: connect makes 1 RPC (create_oauth_state); the rest belong to the callback.
    const dbPerCallback = ((stack.dbCalls.rpc ?? 0) - rpcBefore - flows) / flows;
    const callbackP50 = percentile(callbackTimes, 50);
    const coldStarts = await Promise.all(FUNCTION_NAMES.map((fn) => coldStart(fn, stack.env)));
    const graphs = await Promise.all(FUNCTION_NAMES.map(moduleGraph));

    const figures = {
      flows,
      concurrency,
      meta_latency_ms: latencyMs,
      failures,
      connect_p50_ms: round(percentile(connectTimes, 50)),
      connect_p99_ms: round(percentile(connectTimes, 99)),
      callback_p50_ms: round(callbackP50),
      callback_p99_ms: round(percentile(callbackTimes, 99)),
      flows_per_s: round(flows / seconds),
      meta_calls_per_callback: round(metaPerCallback),
      db_calls_per_callback: round(dbPerCallback),
      overhead_ratio: round(callbackP50 / (metaPerCallback * latencyMs), 3),
      cold_start_connect_ms: round(coldStarts[0]),
      cold_start_callback_ms: round(coldStarts[1]),
      graph_connect_kb: graphs[0].kb,
      graph_connect_modules: graphs[0].modules,
      graph_callback_kb: graphs[1].kb,
      graph_callback_modules: graphs[1].modules,
    };
    console.log(`\n${flows} connect + callback flows, concurrency ${concurrency}, +${latencyMs} ms per Meta call\n`);
    console.log(`  connect    p50 ${figures.connect_p50_ms} ms   p99 ${figures.connect_p99_ms} ms   (target p99 < 15 ms)`);
    console.log(`  callback   p50 ${figures.callback_p50_ms} ms   p99 ${figures.callback_p99_ms} ms`);
    console.log(`  throughput ${figures.flows_per_s} flows/s, ${failures} failed`);
    console.log(`  per callback: ${figures.meta_calls_per_callback} Meta calls, ${figures.db_calls_per_callback} database calls`);
    console.log(`  overhead ratio ${figures.overhead_ratio} (callback p50 / (Meta calls x ${latencyMs} ms); target <= 1.10)`);
    console.log(`  cold start connect ${figures.cold_start_connect_ms} ms, callback ${figures.cold_start_callback_ms} ms (target < 200 ms)`);
    console.log(`  module graph connect ${graphs[0].kb} KB / ${graphs[0].modules} modules, callback ${graphs[1].kb} KB / ${graphs[1].modules} modules\n`);
    console.log(Object.entries(figures).map(([key, value]) => `${key}=${value}`).join(" "));
  } finally {
    await stack.stop();
  }
} finally {
  await dropDatabase(name);
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

/** Size of everything the function loads: our modules plus the npm packages they pull in. */
async function moduleGraph(name: string): Promise<{ kb: number; modules: number }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", `supabase/functions/${name}/index.ts`],
    cwd: new URL("../", import.meta.url),
  }).output();
  const info = JSON.parse(new TextDecoder().decode(output.stdout));
  let bytes = 0;
  let modules = 0;
  for (const module of info.modules ?? []) {
    if (typeof module.size === "number") {
      bytes += module.size;
      modules++;
    }
  }
  return { kb: Math.round(bytes / 1024), modules };
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

function round(value: number, digits = 1): number {
  return Number(value.toFixed(digits));
}

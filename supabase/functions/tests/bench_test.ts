// `deno task bench` must keep working and keep measuring what it says: a short run completes every
// flow, its floor makes the same Meta and database calls as the real flow (the benchmark refuses to
// report otherwise), the webhook floor stores the same rows as instagram-webhook, and the last line
// carries every figure the README and the issue name. The figures' values are not asserted: speed
// goals live in the benchmark, not in timed tests.
import assert from "node:assert/strict";
import { scriptDatabase, stackTest } from "./_support.ts";

const ROOT = new URL("../../../", import.meta.url);
const REQUIRED = [
  "overhead_ratio_c1",
  "overhead_ratio_c16",
  "cold_start_ratio",
  "cpu_ms_per_flow",
  "meta_calls_per_flow",
  "db_calls_per_flow",
  "loaded_kb_connect",
  "loaded_kb_callback",
  "webhook_overhead_ratio",
  "webhook_events_per_s",
  "webhook_p99_ms_batch1000",
];

Deno.test(
  "deno task bench: a short run reports every figure, with the floor doing the same I/O",
  stackTest,
  async () => {
    const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-all",
        "--unstable-no-legacy-abort",
        "scripts/bench.ts",
        "8",
        "4",
        "2",
        ...scriptDatabase().args,
      ],
      cwd: ROOT,
      env: { ...scriptDatabase().env, NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const output = new TextDecoder().decode(stdout);
    assert.equal(code, 0, output + new TextDecoder().decode(stderr));

    const last = output.trim().split("\n").at(-1)!;
    const figures = Object.fromEntries(last.split(" ").map((pair) => pair.split("=")));
    for (const key of REQUIRED) assert.ok(Number.isFinite(Number(figures[key])), `${key} in: ${last}`);
    assert.equal(figures.failures, "0");
    // Per flow: code exchange, long-lived exchange, one read of user and Pages, the Page's subscription
    // before the link and again converging after it; create_oauth_state, claim_oauth_state,
    // create_pending_connection, open_ and link_pending_connection, subscription_target twice.
    assert.equal(figures.meta_calls_per_flow, "5");
    assert.equal(figures.db_calls_per_flow, "7");
    assert.ok(Number(figures.cpu_ms_per_flow) > 0, "the function processes' CPU time was read");
    assert.match(output, /concurrency 1 .*\n.*concurrency 16 /);
    // The webhook floor stored exactly the rows the real receiver stored (every event of every delivery,
    // each once: the benchmark refuses to report otherwise); here that must be more than none.
    assert.ok(Number(figures.webhook_rows_real) > 0, `webhook rows in: ${last}`);
    assert.equal(figures.webhook_rows_floor, figures.webhook_rows_real);
    assert.match(output, /instagram-webhook against its floor/);
    // Cold starts are timed to a real answer (the benchmark stops if one is not a 200).
    assert.match(output, /cold start, source .*instagram-connect [\d.]+ ms, instagram-callback [\d.]+ ms/);
  },
);

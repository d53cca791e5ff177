// `deno task dev` as a newcomer meets it: `cp .env.example supabase/functions/.env` must not crash
// anything (dev stays local and says why), and a file with real values but a bad one must stop with one
// line per problem, no value and no stack trace.
import assert from "node:assert/strict";
import postgres from "postgres";
import { edgeFunctions } from "../../../scripts/lib/edge_functions.ts";
import { dropDevDatabase, runDev, stackTest } from "./_support.ts";

const ROOT = new URL("../../../", import.meta.url);

function isRunning(pid: number): boolean {
  try {
    return !/^\S+ \([^)]*\) Z/.test(Deno.readTextFileSync(`/proc/${pid}/stat`));
  } catch {
    return false;
  }
}

Deno.test(
  "cp .env.example supabase/functions/.env, then deno task dev: the local stack, and why",
  stackTest,
  async () => {
    const secrets = await Deno.makeTempFile();
    await Deno.copyFile(new URL(".env.example", ROOT), secrets);
    try {
      let correlationId = "";
      const { code, output, interrupted } = await runDev(
        secrets,
        {},
        /instagram-connect\s+info\s+request method=GET path=\/instagram-connect status=401/,
        async (origin) => {
          // A path with ESC codes (fetch sends %1B; the function logs the path decoded): it must not
          // reach the terminal as a "clear screen".
          await (await fetch(`${origin}/functions/v1/instagram-connect/%1B[2J`)).body?.cancel();
          const answer = await fetch(`${origin}/functions/v1/instagram-connect`);
          correlationId = (await answer.json()).correlation_id;
        },
      );
      assert.ok(interrupted, output);
      const escaped = output.split("\n").find((line) =>
        line.includes(String.raw`path=/instagram-connect/\x1b[2J`)
      );
      assert.match(escaped ?? "", /instagram-connect\s+info\s+request method=GET .* status=\d{3} /, output);
      assert.ok(!output.includes("\x1b"), "no ESC reached the terminal");
      // Each function's log lines, one per line, readable, ending with the answer's correlation id.
      const requestLine = output.split("\n").find((line) =>
        / request method=GET path=\/instagram-connect status/.test(line)
      ) ?? "";
      assert.match(
        requestLine,
        /^\d\d:\d\d:\d\d\.\d{3} instagram-connect\s+info\s+request method=GET path=\/instagram-connect status=401 error_code=unauthorized ms=\d+\s+\[[0-9a-f]{8}\]$/,
      );
      assert.ok(correlationId && requestLine.endsWith(`[${correlationId.slice(0, 8)}]`), requestLine);
      assert.equal(code, 0, output);
      assert.match(output, /local stack on embedded defaults/);
      assert.match(
        output,
        /names no real values yet for INSTAGRAM_APP_ID, INSTAGRAM_APP_SECRET, INSTAGRAM_REDIRECT_URI, INSTAGRAM_TOKEN_ENCRYPTION_KEYS, INSTAGRAM_WEBHOOK_VERIFY_TOKEN, SUPABASE_URL, SUPABASE_SECRET_KEYS/,
      );
      assert.doesNotMatch(output, /Uncaught|error:|\n\s+at /, "no crash, no stack trace");
    } finally {
      await Deno.remove(secrets);
      await dropDevDatabase();
    }
  },
);

Deno.test(
  "a filled-in secrets file with one bad value: one line per problem, exit 1, no value",
  stackTest,
  async () => {
    const secrets = await Deno.makeTempFile();
    await Deno.writeTextFile(
      secrets,
      [
        "INSTAGRAM_APP_ID=1234567890123",
        "INSTAGRAM_APP_SECRET=0123456789abcdef0123456789abcdef",
        "INSTAGRAM_REDIRECT_URI=https://project.supabase.co/functions/v1/instagram-callback",
        "INSTAGRAM_TOKEN_ENCRYPTION_KEY=c2hvcnQta2V5",
        "INSTAGRAM_WEBHOOK_VERIFY_TOKEN=a-verify-token-for-this-test",
      ].join("\n"),
    );
    try {
      const { code, output } = await runDev(secrets, {
        SUPABASE_URL: "https://project.supabase.co",
        SUPABASE_SECRET_KEYS: '{"default":"sb_secret_abcdefghijklmnop"}',
      }, /$^/);
      assert.equal(code, 1, output);
      const lines = output.split("\n");
      const problem =
        /instagram-connect: configuration: INSTAGRAM_TOKEN_ENCRYPTION_KEY must be 32 random bytes in base64/;
      assert.equal(lines.filter((line) => problem.test(line)).length, 1, "said once:\n" + output);
      assert.match(output, /instagram-connect did not start on .*: see the lines above/);
      assert.doesNotMatch(output, /c2hvcnQta2V5|0123456789abcdef0123456789abcdef|sb_secret_abcdefghijklmnop/);
      assert.doesNotMatch(output, /Uncaught|\n\s+at /, "no stack trace");
    } finally {
      await Deno.remove(secrets);
    }
  },
);

Deno.test(
  "deno task dev --pglite: the stack on an embedded PGlite, said so; Ctrl-C leaves nothing running",
  stackTest,
  async () => {
    let demoDoctors = 0;
    const { code, output, interrupted, port, children } = await runDev(
      "/nonexistent/.env",
      { DATABASE_URL: "" },
      /instagram-connect\s+info\s+request .*status=401/,
      async (origin, banner) => {
        // The printed database answers like any PostgreSQL, and holds the demo doctors.
        const sql = postgres(banner.match(/postgres:\/\/\S+/)![0], { max: 1, onnotice: () => {} });
        demoDoctors = (await sql`select count(*)::int as n from auth.users`)[0].n;
        await sql.end();
        await (await fetch(`${origin}/functions/v1/instagram-connect`)).body?.cancel();
      },
      { args: ["--pglite"], env: {} },
    );
    assert.ok(interrupted, output);
    assert.equal(code, 0, output);
    assert.equal(demoDoctors, 2);
    assert.match(output, /Database {12}postgres:\/\/postgres@127\.0\.0\.1:\d+\/postgres\n/);
    assert.match(
      output,
      /PostgreSQL \d+\.\d+ \(PGlite [\d.]+\), in this process, in memory, because --pglite was given/,
    );
    // Nothing left: the functions it started are gone, and its ports take a new listener again.
    assert.equal(children.length, edgeFunctions().length, "each function's process was seen running");
    for (const pid of children) assert.ok(!isRunning(pid), `function process ${pid} still runs`);
    const pglitePort = Number(output.match(/127\.0\.0\.1:(\d+)\/postgres/)![1]);
    for (const freed of [port, pglitePort]) Deno.listen({ hostname: "127.0.0.1", port: freed }).close();
  },
);

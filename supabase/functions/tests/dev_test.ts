// `deno task dev` as a newcomer meets it: `cp .env.example supabase/functions/.env` must not crash
// anything (dev stays local and says why), and a file with real values but a bad one must stop with one
// line per problem, no value and no stack trace.
import assert from "node:assert/strict";
import postgres from "postgres";
import { edgeFunctions } from "../../../scripts/lib/edge_functions.ts";
import { devDatabaseExists, dropDevDatabase, processesWithEnv, runDev, stackTest } from "./_support.ts";
import { checkRedirectUri } from "../../../scripts/lib/dev_real_mode.ts";

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
        /names no real values yet for INSTAGRAM_APP_ID and INSTAGRAM_APP_SECRET \(or INSTAGRAM_LOGIN_APP_ID and INSTAGRAM_LOGIN_APP_SECRET\), INSTAGRAM_REDIRECT_URI, INSTAGRAM_TOKEN_ENCRYPTION_KEYS, INSTAGRAM_WEBHOOK_VERIFY_TOKEN, SUPABASE_URL, SUPABASE_SECRET_KEYS/,
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

Deno.test(
  "the dev port in use: one line naming it and DEV_PORT, exit 1, no function process and no database left",
  stackTest,
  async () => {
    await dropDevDatabase();
    // As `supabase start` holds 54321: something listens on the port dev is told to use.
    const holder = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (holder.addr as Deno.NetAddr).port;
    try {
      const { code, output } = await runDev("/nonexistent/.env", { DEV_PORT: String(port) }, /$^/);
      assert.equal(code, 1, output);
      const said = output.match(
        new RegExp(
          `^deno task dev: port ${port} is in use: stop what holds it, or run DEV_PORT=(\\d+) deno task dev$`,
          "m",
        ),
      );
      assert.ok(said, output);
      assert.equal(output.trim().split("\n").length, 1, "one line:\n" + output);
      // The port it suggests was free when it said so (the check listens on it): it takes a listener now.
      assert.notEqual(Number(said[1]), port);
      Deno.listen({ hostname: "127.0.0.1", port: Number(said[1]) }).close();
      assert.doesNotMatch(output, /os error|Uncaught|\n\s+at /, "no raw error, no stack trace");
      // Nothing left: no function started for this origin, and no database made for it.
      assert.deepEqual(await processesWithEnv(`SUPABASE_URL=http://127.0.0.1:${port}`), []);
      assert.equal(await devDatabaseExists(), false, "the dev database was not left behind");
    } finally {
      holder.close();
      await dropDevDatabase();
    }
  },
);

Deno.test("port 54321 in use: named as supabase start's, with supabase stop", stackTest, async () => {
  let holder: Deno.Listener | undefined;
  try {
    holder = Deno.listen({ hostname: "127.0.0.1", port: 54321 });
  } catch { /* already held (a running `supabase start`): in use all the same */ }
  try {
    const { code, output } = await runDev("/nonexistent/.env", { DEV_PORT: "54321" }, /$^/);
    assert.equal(code, 1, output);
    assert.match(
      output,
      /^deno task dev: port 54321 is in use \(supabase start listens there: supabase stop frees it\): stop what holds it, or run DEV_PORT=(\d+) deno task dev$/m,
    );
    // Past `supabase start`'s own ports (54321 to 54329), so the suggestion does not clash with it later.
    assert.ok(Number(output.match(/DEV_PORT=(\d+)/)![1]) >= 54400, output);
  } finally {
    holder?.close();
  }
});

// ---- real mode: where INSTAGRAM_REDIRECT_URI leads ----

const REF = "abcdefghijklmnopqrst";
/** A secrets file every function accepts, with this redirect URI. */
async function realSecrets(redirectUri: string): Promise<string> {
  const file = await Deno.makeTempFile();
  await Deno.writeTextFile(
    file,
    [
      "INSTAGRAM_APP_ID=1234567890123",
      "INSTAGRAM_APP_SECRET=0123456789abcdef0123456789abcdef",
      `INSTAGRAM_REDIRECT_URI=${redirectUri}`,
      `INSTAGRAM_TOKEN_ENCRYPTION_KEYS=k1:${btoa(String.fromCharCode(...new Uint8Array(32).fill(7)))}`,
      "INSTAGRAM_WEBHOOK_VERIFY_TOKEN=a-verify-token-for-this-test",
      `SUPABASE_URL=https://${REF}.supabase.co`,
      'SUPABASE_SECRET_KEYS={"default":"sb_secret_abcdefghijklmnop"}',
    ].join("\n"),
  );
  return file;
}

Deno.test(
  "real mode, a typo in the callback's function name: refused, naming it, before any function starts",
  stackTest,
  async () => {
    const secrets = await realSecrets(`https://${REF}.supabase.co/functions/v1/instagram-calback`);
    try {
      const { code, output, port } = await runDev(secrets, {}, /$^/);
      assert.equal(code, 1, output);
      assert.match(
        output,
        /deno task dev: INSTAGRAM_REDIRECT_URI names the function "instagram-calback": it must be instagram-callback \(path \/functions\/v1\/instagram-callback\)\./,
      );
      assert.match(output, /Fix .* \(or DEV_TUNNEL_URL\), then start again\./);
      assert.doesNotMatch(
        output,
        /sb_secret_abcdefghijklmnop|0123456789abcdef0123456789abcdef|Uncaught|\n\s+at /,
      );
      assert.deepEqual(
        await processesWithEnv(
          `INSTAGRAM_REDIRECT_URI=https://${REF}.supabase.co/functions/v1/instagram-calback`,
        ),
        [],
      );
      Deno.listen({ hostname: "127.0.0.1", port }).close(); // the port was never bound
    } finally {
      await Deno.remove(secrets);
    }
  },
);

Deno.test(
  "real mode, the redirect on another project than SUPABASE_URL: refused, naming both refs",
  stackTest,
  async () => {
    const secrets = await realSecrets(
      "https://zyxwvutsrqponmlkjihg.supabase.co/functions/v1/instagram-callback",
    );
    try {
      const { code, output } = await runDev(secrets, {}, /$^/);
      assert.equal(code, 1, output);
      assert.match(
        output,
        new RegExp(
          `INSTAGRAM_REDIRECT_URI is on project zyxwvutsrqponmlkjihg but SUPABASE_URL on ${REF}: .*Use one project for both\\.`,
        ),
      );
    } finally {
      await Deno.remove(secrets);
    }
  },
);

Deno.test(
  "real mode, a redirect that leads elsewhere: a warning, then the functions run, with the steps for a real Meta app",
  stackTest,
  async () => {
    const redirect = `https://${REF}.supabase.co/functions/v1/instagram-callback`;
    const secrets = await realSecrets(redirect);
    try {
      const { code, output, interrupted, port, children } = await runDev(secrets, {}, /Ctrl-C stops/);
      assert.ok(interrupted, output);
      assert.equal(code, 0, output);
      assert.match(
        output,
        new RegExp(
          `^deno task dev: warning: INSTAGRAM_REDIRECT_URI leads to the deployed instagram-callback of project ${REF}, not to this dev server \\(http://127\\.0\\.0\\.1:${port}\\): after Allow, Meta sends the browser there\\. To finish logins here, use a tunnel \\(the steps below\\)\\.$`,
          "m",
        ),
      );
      assert.match(
        output,
        /Meta's redirect after Allow: https:\/\/abcdefghijklmnopqrst\.supabase\.co\/functions\/v1\/instagram-callback \(elsewhere: see the warning above\)/,
      );
      assert.match(output, new RegExp(`ngrok http 127\\.0\\.0\\.1:${port}`));
      // No tunnel declared yet: both ways, and where to register the URI.
      assert.match(
        output,
        new RegExp(`INSTAGRAM_REDIRECT_URI=http://localhost:${port}/functions/v1/instagram-callback\\n`),
      );
      assert.match(
        output,
        /DEV_TUNNEL_URL=<its origin> and INSTAGRAM_REDIRECT_URI=<its origin>\/functions\/v1\/instagram-callback\n/,
      );
      assert.match(
        output,
        /Register INSTAGRAM_REDIRECT_URI, exactly, in the app's Facebook Login settings, Valid OAuth Redirect URIs\.\n/,
      );
      assert.match(
        output,
        /needs this checkout's migrations \(supabase link, then supabase db push --remote\)/,
      );
      assert.equal(children.length, edgeFunctions().length, "the functions ran");
      for (const pid of children) assert.ok(!isRunning(pid), `function process ${pid} still runs`);
    } finally {
      await Deno.remove(secrets);
    }
  },
);

Deno.test(
  "real mode through a declared tunnel: no warning, and the exact URI to register",
  stackTest,
  async () => {
    const tunnel = "https://abc123.ngrok-free.app";
    const secrets = await realSecrets(`${tunnel}/functions/v1/instagram-callback`);
    try {
      const { code, output, interrupted } = await runDev(secrets, { DEV_TUNNEL_URL: tunnel }, /Ctrl-C stops/);
      assert.ok(interrupted, output);
      assert.equal(code, 0, output);
      assert.doesNotMatch(output, /warning/);
      assert.match(
        output,
        /Meta's redirect after Allow: https:\/\/abc123\.ngrok-free\.app\/functions\/v1\/instagram-callback \(here, through the tunnel\)/,
      );
      assert.match(
        output,
        /Valid OAuth Redirect URIs:\n\s+https:\/\/abc123\.ngrok-free\.app\/functions\/v1\/instagram-callback\n/,
      );
    } finally {
      await Deno.remove(secrets);
    }
  },
);

Deno.test("real mode's redirect check, case by case (scripts/lib/dev_real_mode.ts)", () => {
  const check = (redirectUri: string, tunnelUrl?: string) =>
    checkRedirectUri({ redirectUri, supabaseUrl: `https://${REF}.supabase.co`, port: 54321, tunnelUrl });
  // This dev server itself, by either name: nothing to say.
  for (const origin of ["http://127.0.0.1:54321", "http://localhost:54321"]) {
    assert.deepEqual(check(`${origin}/functions/v1/instagram-callback`), {
      refusals: [],
      warnings: [],
      uriToRegister: `${origin}/functions/v1/instagram-callback`,
    });
  }
  // The deployed callback: warned (logins then finish there, not here), the URI to register left to fill in.
  const deployed = check(`https://${REF}.supabase.co/functions/v1/instagram-callback`);
  assert.match(
    deployed.warnings[0],
    /leads to the deployed instagram-callback of project abcdefghijklmnopqrst/,
  );
  assert.equal(deployed.uriToRegister, "https://<tunnel>/functions/v1/instagram-callback");
  // Another port on loopback is not this server: warned.
  assert.match(
    check("http://127.0.0.1:54400/functions/v1/instagram-callback").warnings[0],
    /is not this dev server/,
  );
  // A declared tunnel: the redirect on it is fine and is the URI to register.
  const tunnel = "https://abc123.ngrok-free.app";
  assert.deepEqual(check(`${tunnel}/functions/v1/instagram-callback`, tunnel), {
    refusals: [],
    warnings: [],
    uriToRegister: `${tunnel}/functions/v1/instagram-callback`,
  });
  // A declared tunnel the redirect does not use: warned, with the URI to set.
  assert.deepEqual(check(`https://${REF}.supabase.co/functions/v1/instagram-callback`, tunnel).warnings, [
    `INSTAGRAM_REDIRECT_URI's origin https://${REF}.supabase.co is not the tunnel's (DEV_TUNNEL_URL ${tunnel}): set it to ${tunnel}/functions/v1/instagram-callback to come back here.`,
  ]);
  // A tunnel that is not an https origin: refused.
  assert.match(
    check(`${tunnel}/functions/v1/instagram-callback`, "http://abc123.ngrok-free.app/x").refusals[0],
    /DEV_TUNNEL_URL must be the tunnel's https origin/,
  );
  // A path that is not /functions/v1/<name> at all: refused, naming the path.
  assert.deepEqual(check(`${tunnel}/callback`, tunnel).refusals, [
    "INSTAGRAM_REDIRECT_URI's path is /callback: it must be /functions/v1/instagram-callback, the function that finishes the login.",
  ]);
  // A redirect that is no URL: left to the functions' own configuration check (config.ts), not a crash here.
  assert.deepEqual(check("not a url").refusals, []);
});

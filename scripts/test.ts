// `deno task test`: the whole suite on a fresh throw-away database.
//   1. PostgreSQL: DATABASE_URL, or the local server (started if it is down and we may).
//   2. What the suite needs: pgTAP, pg_prove, plpgsql_check and Chromium (apt-get when missing and we
//      are root, else the exact command), and the Supabase CLI (pinned in deno.json, run with npx).
//   3. A new database with the Supabase shim; the migrations applied by `supabase db push`, as
//      production applies them; then `supabase db advisors` and `supabase db lint` must find nothing.
//   4. pg_prove on supabase/tests/database, then `deno test` on supabase/functions/tests (or only on
//      the test files named as arguments: `deno task test supabase/functions/tests/finish_test.ts`).
//   5. The database is dropped; the exit code is non-zero if anything failed.
import postgres from "postgres";
import { adminUrl, applyShim, createDatabase, dropDatabase, ensurePostgres } from "./lib/database.ts";
import { ALLOWED_INFO_LINTS, runAdvisors, runLint } from "./lib/database_checks.ts";
import { ensureSupabaseCli, supabase } from "./lib/supabase_cli.ts";

const ROOT = new URL("../", import.meta.url);

async function main(): Promise<number> {
  await ensurePostgres();
  const chromium = await ensureSystemPackages();
  const cliVersion = await ensureSupabaseCli();

  const name = `instagram_connect_test_${Date.now()}_${Deno.pid}`;
  const databaseUrl = await createDatabase(name);
  try {
    await applyShim(databaseUrl);
    const push = await supabase("db", "push", `--remote=${databaseUrl}`, "--yes");
    if (!push.success) throw new Error(`supabase db push failed:\n${push.stdout}${push.stderr}`);
    const applied = await recordedMigrations(databaseUrl);
    const checks = await databaseChecks(databaseUrl);

    const sqlFiles = [...Deno.readDirSync(new URL("supabase/tests/database/", ROOT))]
      .map((entry) => entry.name).filter((file) => file.endsWith(".test.sql")).sort()
      .map((file) => `supabase/tests/database/${file}`);
    const pgtap = await run("pg_prove", ["--dbname", databaseUrl, "--verbose", ...sqlFiles], {});
    const sqlPassed = (pgtap.output.match(/^ok \d+/gm) ?? []).length;
    const sqlFailed = failures(pgtap.success, (pgtap.output.match(/^not ok \d+/gm) ?? []).length);

    // --unstable-no-legacy-abort: request.signal aborts only when a client gives up, which is what the
    // fake Meta listens for (and Deno then prints no warning about the legacy behaviour).
    const deno = await run(Deno.execPath(), [
      "test",
      "--allow-all",
      "--unstable-no-legacy-abort",
      ...(Deno.args.length ? Deno.args : ["supabase/functions/tests/"]),
    ], {
      TEST_DATABASE_URL: databaseUrl,
      CHROMIUM_PATH: chromium,
      NO_COLOR: "1",
    });
    // "ok | 9 passed (41 steps) | 0 failed": tests and their steps are all counted.
    const summary = deno.output.match(
      /\| (\d+) passed(?: \((\d+) steps?\))? \| (\d+) failed(?: \((\d+) steps?\))?/,
    );
    const [testsPassed, stepsPassed, testsFailed, stepsFailed] = [1, 2, 3, 4].map((i) =>
      Number(summary?.[i] ?? 0)
    );
    const denoFailed = failures(deno.success, testsFailed + stepsFailed);

    const passed = checks.passed + sqlPassed + testsPassed + stepsPassed;
    const failed = checks.failed + sqlFailed + denoFailed;
    console.log(`
Supabase CLI ${cliVersion}: db push applied and recorded ${applied} migrations
${checks.lines.join("\n")}
pgTAP: ${sqlPassed} passed, ${sqlFailed} failed (assertions in ${sqlFiles.length} files)
deno test: ${testsPassed + stepsPassed} passed, ${denoFailed} failed (${
      plural(testsPassed, "test")
    } and their ${plural(stepsPassed, "step")}, each counted once)
${passed} passed, ${failed} failed (the 2 Supabase checks, the pgTAP assertions, the Deno tests and steps)`);
    return failed === 0 && pgtap.success && deno.success && passed > 0 ? 0 : 1;
  } finally {
    await dropDatabase(name);
  }
}

/** Supabase's advisors and plpgsql_check: each is one check that passes only with nothing to report. */
async function databaseChecks(databaseUrl: string) {
  const advisors = await runAdvisors(databaseUrl);
  const lint = await runLint(databaseUrl);
  const allowed = Object.entries(advisors.allowed).map(([lint, count]) =>
    `${count} INFO ${lint} (allowed: ${ALLOWED_INFO_LINTS[lint]})`
  );
  const lines = [
    `supabase db advisors: ${advisors.failing.length} findings${
      allowed.length ? `; ${allowed.join("; ")}` : ""
    }`,
    ...advisors.failing.map((finding) => `  ${finding.level} ${finding.name}: ${finding.detail}`),
    `supabase db lint (plpgsql_check, public and private): ${lint.length} errors or warnings`,
    ...lint.map((issue) => `  ${issue.level} in ${issue.function}: ${issue.message}`),
  ];
  const failed = (advisors.failing.length ? 1 : 0) + (lint.some((issue) => issue.level === "error") ? 1 : 0);
  return { lines, passed: 2 - failed, failed };
}

/** The migrations `supabase db push` recorded, as it records them on a hosted project. */
async function recordedMigrations(databaseUrl: string): Promise<number> {
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  try {
    return (await sql`select count(*)::int as n from supabase_migrations.schema_migrations`)[0].n;
  } finally {
    await sql.end();
  }
}

/** A runner that failed without reporting a failed test (a crash, a bad plan) still counts as one. */
function failures(success: boolean, counted: number): number {
  return counted || (success ? 0 : 1);
}

/** Runs a command with output streamed to ours and kept for counting. */
async function run(command: string, args: string[], env: Record<string, string>) {
  const child = new Deno.Command(command, { args, cwd: ROOT, env, stdout: "piped", stderr: "piped" }).spawn();
  let output = "";
  const pump = async (stream: ReadableStream<Uint8Array>, sink: typeof Deno.stdout) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      output += decoder.decode(chunk, { stream: true });
      await sink.write(chunk);
    }
  };
  await Promise.all([pump(child.stdout, Deno.stdout), pump(child.stderr, Deno.stderr)]);
  return { success: (await child.status).success, output };
}

/**
 * pgTAP, pg_prove and plpgsql_check for the server's major version, and the browser test's Chromium
 * (CHROMIUM_PATH, or Debian's package), installed in one apt-get run when missing and we may.
 */
async function ensureSystemPackages(): Promise<string> {
  const sql = postgres(adminUrl(), { max: 1, onnotice: () => {} });
  const available = new Set(
    (await sql`select name from pg_available_extensions where name in ('pgtap', 'plpgsql_check')`).map((
      row,
    ) => row.name),
  );
  const [{ version }] = await sql`select current_setting('server_version_num')::int / 10000 as version`;
  await sql.end();

  const chromium = Deno.env.get("CHROMIUM_PATH") ?? "/usr/bin/chromium";
  if (Deno.env.has("CHROMIUM_PATH") && !(await isFile(chromium))) {
    throw new Error(`CHROMIUM_PATH is set to ${chromium}, which does not exist.`);
  }
  const missing = [
    ...(available.has("pgtap") && await hasCommand("pg_prove")
      ? []
      : [`postgresql-${version}-pgtap`, "libtap-parser-sourcehandler-pgtap-perl"]),
    ...(available.has("plpgsql_check") ? [] : [`postgresql-${version}-plpgsql-check`]),
    ...(await isFile(chromium) ? [] : ["chromium"]),
  ];
  if (missing.length) await aptInstall(missing, "pgTAP, pg_prove, plpgsql_check and Chromium for the suite");
  return chromium;
}

async function hasCommand(name: string): Promise<boolean> {
  const result = await new Deno.Command("sh", { args: ["-c", `command -v ${name}`], stdout: "null" })
    .output();
  return result.success;
}

async function isFile(path: string): Promise<boolean> {
  return await Deno.stat(path).then((info) => info.isFile, () => false);
}

/** Installs Debian packages when we are root with apt-get; otherwise says exactly what to install. */
async function aptInstall(packages: string[], what: string): Promise<void> {
  const isRoot = Deno.uid?.() === 0;
  if (!isRoot || !await hasCommand("apt-get")) {
    throw new Error(
      `Not installed: ${what}. Install them, then run again:\n  sudo apt-get install -y ${
        packages.join(" ")
      }\n` +
        "  (or your platform's equivalent packages)",
    );
  }
  console.log(`installing ${packages.join(" ")} with apt-get (${what})`);
  for (const args of [["update", "-qq"], ["install", "-y", "-qq", ...packages]]) {
    const result = await new Deno.Command("apt-get", { args, env: { DEBIAN_FRONTEND: "noninteractive" } })
      .output();
    if (!result.success) {
      throw new Error(`apt-get ${args.join(" ")} failed:\n${new TextDecoder().decode(result.stderr)}`);
    }
  }
}

try {
  Deno.exit(await main());
} catch (error) {
  console.error(`\ndeno task test: ${(error as Error).message}`);
  Deno.exit(1);
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

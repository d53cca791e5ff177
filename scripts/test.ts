// `deno task test [--pglite] [test files...]`: the whole suite on fresh throw-away databases.
//   1. Where: the PostgreSQL server (DATABASE_URL, or the local one, started if it is down and we may)
//      and, beside it, an embedded PGlite (PostgreSQL 18 in WebAssembly). Without a server, or with
//      --pglite, everything runs on PGlite.
//   2. What the suite needs: pgTAP and plpgsql_check for the server, Chromium for the browser test
//      (apt-get when missing and we are root, else the exact command), and the Supabase CLI (pinned in
//      deno.json, run with npx).
//   3. On each database: the Supabase shim, the migrations applied by `supabase db push` as production
//      applies them, the drift check (a database from supabase/schemas/ must be the same, by
//      `supabase db diff`), and the pgTAP files. On the first: `supabase db advisors` and (on a server, which
//      has plpgsql_check) `supabase db lint` must find nothing, then `deno test` on
//      supabase/functions/tests (or only on the test files named as arguments).
//   4. The databases are dropped; the exit code is non-zero if anything failed.
import postgres from "postgres";
import {
  adminUrl,
  applyLegacyGrants,
  applyShim,
  type DatabaseHost,
  findServer,
  pgliteHost,
} from "./lib/database.ts";
import { ALLOWED_INFO_LINTS, runAdvisors, runLint } from "./lib/database_checks.ts";
import { describeTapFile, failuresOf, runPgtapFiles } from "./lib/pgtap_runner.ts";
import { checkDrift, describeDrift, type Drift, OWN_SCHEMAS } from "./lib/schema_drift.ts";
import { ensureSupabaseCli, supabase } from "./lib/supabase_cli.ts";

const ROOT = new URL("../", import.meta.url);
const PGLITE_ONLY = Deno.args.includes("--pglite");
const TEST_FILES = Deno.args.filter((arg) => arg !== "--pglite");

interface Tally {
  passed: number;
  failed: number;
  lines: string[];
}

async function main(): Promise<number> {
  const hosts: DatabaseHost[] = [];
  try {
    const server: { host?: DatabaseHost; why: string } = PGLITE_ONLY
      ? { why: "--pglite was given" }
      : await findServer();
    if (server.host) hosts.push(server.host);
    if (Deno.env.get("TEST_REQUIRE_SERVER") && !server.host) {
      throw new Error(`TEST_REQUIRE_SERVER is set, but ${server.why}.`);
    }
    const why = server.host ? "" : server.why;
    const chromium = await ensureSystemPackages(hosts.length > 0);
    const cliVersion = await ensureSupabaseCli();
    console.log("starting the embedded PGlite");
    hosts.push(await pgliteHost());
    const [primary, ...others] = hosts;
    console.log(
      why
        ? `Everything runs on ${primary.version}: ${why}.`
        : `Databases: ${primary.version} (${server.why}), and ${
          others.map((host) => host.version).join(", ")
        }.`,
    );

    const tallies: Tally[] = [];
    const name = `instagram_connect_test_${Date.now()}_${Deno.pid}`;
    const primaryUrl = await prepare(primary, name, cliVersion, tallies);
    // Before the checks: `supabase db lint` installs plpgsql_check, which is no part of either side.
    tallies.push(await schemaDrift(primary, name, primaryUrl));
    tallies.push(await databaseChecks(primary, primaryUrl));
    tallies.push(await pgtap(primary, primaryUrl));
    for (const host of others) {
      const url = await prepare(host, name, cliVersion, tallies, true);
      tallies.push(await schemaDrift(host, name, url, true));
      tallies.push(await pgtap(host, url));
    }
    tallies.push(await denoTests(primary, primaryUrl, chromium));

    const passed = tallies.reduce((sum, tally) => sum + tally.passed, 0);
    const failed = tallies.reduce((sum, tally) => sum + tally.failed, 0);
    console.log(`\n${tallies.flatMap((tally) => tally.lines).join("\n")}`);
    console.log(
      `${passed} passed, ${failed} failed (the Supabase checks, the drift checks, the pgTAP assertions on ${
        hosts.map((host) => host.label).join(" and ")
      }, the Deno tests and steps)`,
    );
    return failed === 0 && passed > 0 ? 0 : 1;
  } finally {
    for (const host of hosts) await host.close();
  }
}

/**
 * A new database on `host` with the shim and the migrations, applied by `supabase db push`. With
 * `legacyGrants`, under the default privileges of Supabase projects made before #45329
 * (scripts/sql/supabase_legacy_grants.sql): the pgTAP privilege checks and the drift check then run
 * under both settings, one per engine.
 */
async function prepare(
  host: DatabaseHost,
  name: string,
  cliVersion: string,
  tallies: Tally[],
  legacyGrants = false,
) {
  const url = await host.createDatabase(name);
  await applyShim(url);
  if (legacyGrants) await applyLegacyGrants(url);
  const push = await supabase("db", "push", `--remote=${url}`, "--yes");
  if (!push.success) {
    throw new Error(`supabase db push on ${host.version} failed:\n${push.stdout}${push.stderr}`);
  }
  tallies.push({
    passed: 0,
    failed: 0,
    lines: [
      `Supabase CLI ${cliVersion}: db push applied and recorded ${await recordedMigrations(
        url,
      )} migrations on ${host.version}${
        legacyGrants ? ", under the API roles' old default grants (#45329)" : ", with no default grants"
      }`,
    ],
  });
  return url;
}

/**
 * The declarative schema against the migrations: a database from supabase/schemas/ beside the one
 * `supabase db push` migrated, compared both ways by pg-delta. One check: it passes only when neither
 * direction has a statement (or pg-delta refuses an object it cannot manage, with --strict-coverage).
 */
async function schemaDrift(
  host: DatabaseHost,
  name: string,
  migrated: string,
  legacyGrants = false,
): Promise<Tally> {
  const label = `schema drift on ${host.label} (supabase/schemas/ against supabase/migrations/, ${
    OWN_SCHEMAS.join(" and ")
  }${legacyGrants ? ", the migrations under the old default grants" : ""})`;
  try {
    const drift = await checkDrift(host, `${name}_drift`, { migrated });
    // Under the old default grants the databases differ in those defaults and must differ in nothing
    // else: every object's privileges are then the ones its schema file states, whatever the setting.
    const found = describeDrift(legacyGrants ? withoutDefaultPrivileges(drift) : drift);
    return found
      ? { passed: 0, failed: 1, lines: [`${label}: they differ`, found] }
      : { passed: 1, failed: 0, lines: [`${label}: none`] };
  } catch (error) {
    return { passed: 0, failed: 1, lines: [`${label}: ${(error as Error).message}`] };
  }
}

function withoutDefaultPrivileges(drift: Drift): Drift {
  const keep = (sql: string) =>
    sql.split(/\n(?=\S)/).filter((statement) => !/^ALTER DEFAULT PRIVILEGES /.test(statement.trim()))
      .join("\n").trim();
  return { ...drift, schemaOnly: keep(drift.schemaOnly), migrationsOnly: keep(drift.migrationsOnly) };
}

/** The pgTAP files, each assertion counted; a file that errs or misses its plan counts as one failure. */
async function pgtap(host: DatabaseHost, url: string): Promise<Tally> {
  const files = [...Deno.readDirSync(new URL("supabase/tests/database/", ROOT))]
    .map((entry) => entry.name).filter((file) => file.endsWith(".test.sql")).sort()
    .map((file) => new URL(`supabase/tests/database/${file}`, ROOT));
  console.log(`\npgTAP on ${host.version}`);
  const results = await runPgtapFiles(url, files);
  for (const result of results) console.log(describeTapFile(result));
  const passed = results.reduce((sum, result) => sum + result.passed, 0);
  const failed = results.reduce((sum, result) => sum + failuresOf(result), 0);
  return {
    passed,
    failed,
    lines: [`pgTAP ${host.label}: ${passed} passed, ${failed} failed (assertions in ${files.length} files)`],
  };
}

/** `deno test`, with the database's URL and engine; tests that race requests say so in TEST_RACE_LOG. */
async function denoTests(host: DatabaseHost, url: string, chromium: string): Promise<Tally> {
  const raceLog = await Deno.makeTempFile({ prefix: "races-" });
  try {
    // --unstable-no-legacy-abort: request.signal aborts only when a client gives up, which is what the
    // fake Meta listens for (and Deno then prints no warning about the legacy behaviour).
    const deno = await run(Deno.execPath(), [
      "test",
      "--allow-all",
      "--unstable-no-legacy-abort",
      ...(TEST_FILES.length ? TEST_FILES : ["supabase/functions/tests/"]),
    ], {
      TEST_DATABASE_URL: url,
      TEST_DATABASE_ENGINE: host.oneSession ? "pglite" : "server",
      TEST_RACE_LOG: raceLog,
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
    const races = [...new Set((await Deno.readTextFile(raceLog)).split("\n").filter(Boolean))];
    const lines = [
      `deno test on ${host.label}: ${testsPassed + stepsPassed} passed, ${
        failures(deno.success, testsFailed + stepsFailed)
      } failed (${plural(testsPassed, "test")} and their ${plural(stepsPassed, "step")}, each counted once)`,
    ];
    if (host.oneSession && races.length) {
      lines.push(
        `  ${
          plural(races.length, "test")
        } raced requests at the database; PGlite serves one session, so their ` +
          "transactions ran one after the other (no real concurrency) and their outcomes were asserted:",
        ...races.map((race) => `    ${race}`),
      );
    }
    return {
      passed: testsPassed + stepsPassed,
      failed: failures(deno.success, testsFailed + stepsFailed),
      lines,
    };
  } finally {
    await Deno.remove(raceLog);
  }
}

/**
 * Supabase's advisors and plpgsql_check: each is one check that passes only with nothing to report.
 * PGlite has no plpgsql_check: there the lint is not run, and says so (it is not counted).
 */
async function databaseChecks(host: DatabaseHost, databaseUrl: string): Promise<Tally> {
  const advisors = await runAdvisors(databaseUrl);
  const lint = host.oneSession ? undefined : await runLint(databaseUrl);
  const allowed = Object.entries(advisors.allowed).map(([lint, count]) =>
    `${count} INFO ${lint} (allowed: ${ALLOWED_INFO_LINTS[lint]})`
  );
  const lines = [
    `supabase db advisors on ${host.label}: ${advisors.failing.length} findings${
      allowed.length ? `; ${allowed.join("; ")}` : ""
    }`,
    ...advisors.failing.map((finding) => `  ${finding.level} ${finding.name}: ${finding.detail}`),
    lint
      ? `supabase db lint (plpgsql_check, public and private): ${lint.length} errors or warnings`
      : "supabase db lint: not run, PGlite has no plpgsql_check (not counted; it runs wherever a server is)",
    ...(lint ?? []).map((issue) => `  ${issue.level} in ${issue.function}: ${issue.message}`),
  ];
  const failed = (advisors.failing.length ? 1 : 0) +
    ((lint ?? []).some((issue) => issue.level === "error") ? 1 : 0);
  return { lines, passed: (lint ? 2 : 1) - failed, failed };
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
 * pgTAP and plpgsql_check for the server's major version (when there is a server), and the browser
 * test's Chromium (CHROMIUM_PATH, or Debian's package), installed in one apt-get run when missing and
 * we may. PGlite brings its own pgTAP (an npm package).
 */
async function ensureSystemPackages(server: boolean): Promise<string> {
  const missing: Record<string, string> = {};
  if (server) {
    const sql = postgres(adminUrl(), { max: 1, onnotice: () => {} });
    const available = new Set(
      (await sql`select name from pg_available_extensions where name in ('pgtap', 'plpgsql_check')`).map((
        row,
      ) => row.name),
    );
    const [{ version }] = await sql`select current_setting('server_version_num')::int / 10000 as version`;
    await sql.end();
    if (!available.has("pgtap")) missing[`postgresql-${version}-pgtap`] = "pgTAP on the server";
    if (!available.has("plpgsql_check")) {
      missing[`postgresql-${version}-plpgsql-check`] = "plpgsql_check for supabase db lint";
    }
  }
  const chromium = Deno.env.get("CHROMIUM_PATH") ?? "/usr/bin/chromium";
  if (Deno.env.has("CHROMIUM_PATH") && !(await isFile(chromium))) {
    throw new Error(`CHROMIUM_PATH is set to ${chromium}, which does not exist.`);
  }
  if (!(await isFile(chromium))) {
    missing.chromium = "Chromium for the browser test (or set CHROMIUM_PATH to a Chromium or Chrome)";
  }
  if (Object.keys(missing).length) await aptInstall(missing);
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

/** Installs Debian packages (name: what for) when we are root with apt-get; else says what to install. */
async function aptInstall(missing: Record<string, string>): Promise<void> {
  const packages = Object.keys(missing);
  const what = Object.values(missing).join("; ");
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

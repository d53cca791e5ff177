// `deno task test`: the whole suite on a fresh throw-away database.
//   1. PostgreSQL: DATABASE_URL, or the local server (started if it is down and we may).
//   2. pgTAP, pg_prove and Chromium: installed with apt-get when missing and we are root, else explained.
//   3. A new database, the Supabase shim and the migrations, in the CLI's order.
//   4. pg_prove on supabase/tests/database, then `deno test` on supabase/functions/tests (or only on
//      the test files named as arguments: `deno task test supabase/functions/tests/finish_test.ts`).
//   5. The database is dropped; the exit code is non-zero if anything failed.
import postgres from "postgres";
import { adminUrl, createDatabase, dropDatabase, ensurePostgres, migrate } from "./lib/database.ts";

const ROOT = new URL("../", import.meta.url);

async function main(): Promise<number> {
  await ensurePostgres();
  await ensurePgTap();
  const chromium = await ensureChromium();

  const name = `instagram_connect_test_${Date.now()}_${Deno.pid}`;
  const databaseUrl = await createDatabase(name);
  try {
    const migrations = await migrate(databaseUrl);
    console.log(`database ${name}: ${migrations.length} migrations applied`);

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
    const denoPassed = Number(summary?.[1] ?? 0) + Number(summary?.[2] ?? 0);
    const denoFailed = failures(deno.success, Number(summary?.[3] ?? 0) + Number(summary?.[4] ?? 0));

    const passed = sqlPassed + denoPassed;
    const failed = sqlFailed + denoFailed;
    console.log(`\npgTAP: ${sqlPassed} passed, ${sqlFailed} failed`);
    console.log(`deno test: ${denoPassed} passed, ${denoFailed} failed`);
    console.log(`${passed} passed, ${failed} failed`);
    return pgtap.success && deno.success && passed > 0 ? 0 : 1;
  } finally {
    await dropDatabase(name);
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

async function ensurePgTap(): Promise<void> {
  const sql = postgres(adminUrl(), { max: 1, onnotice: () => {} });
  const [{ available }] =
    await sql`select count(*)::int as available from pg_available_extensions where name = 'pgtap'`;
  const [{ version }] = await sql`select current_setting('server_version_num')::int / 10000 as version`;
  await sql.end();
  if (available && await hasCommand("pg_prove")) return;

  await aptInstall(
    [`postgresql-${version}-pgtap`, "libtap-parser-sourcehandler-pgtap-perl"],
    "pgTAP and pg_prove",
  );
}

/** The browser test's Chromium: CHROMIUM_PATH, or Debian's package (installed when missing and we may). */
async function ensureChromium(): Promise<string> {
  const path = Deno.env.get("CHROMIUM_PATH") ?? "/usr/bin/chromium";
  if (await isFile(path)) return path;
  if (Deno.env.has("CHROMIUM_PATH")) {
    throw new Error(`CHROMIUM_PATH is set to ${path}, which does not exist.`);
  }
  await aptInstall(["chromium"], "Chromium for the browser test");
  return path;
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
      `Not installed: ${what}. Install it, then run again:\n  sudo apt-get install -y ${
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

// The Supabase CLI, pinned in deno.json's `supabase` task (npm's `supabase` package, run with npx:
// Deno's npm resolution trips over its per-platform optional packages). Without Docker it still does
// real work against any PostgreSQL URL: `db push --remote=<url>` applies and records the migrations,
// `db advisors` runs the dashboard's Security and Performance Advisor, `db lint` runs plpgsql_check.
const ROOT = new URL("../../", import.meta.url);

export interface CliResult {
  success: boolean;
  stdout: string;
  stderr: string;
}

export async function supabase(...args: string[]): Promise<CliResult> {
  return await supabaseWith({}, ...args);
}

/** The CLI with more variables (PGSSLMODE=disable for loopback databases, whose TLS it would try). */
export async function supabaseWith(env: Record<string, string>, ...args: string[]): Promise<CliResult> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["task", "--quiet", "supabase", ...args, "--workdir", new URL(".", ROOT).pathname],
    cwd: ROOT,
    env: { NO_COLOR: "1", DO_NOT_TRACK: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { success: output.success, stdout: decode(output.stdout), stderr: decode(output.stderr) };
}

/** Fails with what is missing when the CLI cannot run (it needs Node.js's npx and the npm registry). */
export async function ensureSupabaseCli(): Promise<string> {
  const version = await supabase("--version").catch((error) => ({
    success: false,
    stdout: "",
    stderr: String(error),
  }));
  if (!version.success) {
    throw new Error(
      "The Supabase CLI could not run (deno task supabase --version). It is installed from npm with npx:\n" +
        "  install Node.js with npm (https://nodejs.org), then run: npx --yes supabase@3.1.0 --version\n" +
        version.stderr.trim().split("\n").slice(-3).join("\n"),
    );
  }
  return version.stdout.trim();
}

/** The CLI's JSON output (`--output-format json`), whatever it prints around it. */
export function jsonOf<T>(result: CliResult): T {
  const text = result.stdout.slice(result.stdout.indexOf("{"));
  return JSON.parse(text) as T;
}

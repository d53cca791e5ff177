// Runs pgTAP test files like `pg_prove`, with nothing but a database connection: each file is sent as it
// is (simple query protocol, one statement after another, as psql would), and every row it returns is a
// TAP line. A file passes when every assertion it planned ran and passed. Stricter than pg_prove: an SQL
// error, a missing or unmet plan, pgTAP's own "# Looks like ..." complaint, a skipped assertion and a
// failing TODO all fail the file. Needs no Perl and no psql, so it runs the same on a server and on PGlite.
import postgres from "postgres";

export interface TapFile {
  file: string;
  passed: number;
  failed: number;
  skipped: number;
  /** What made the file fail beyond its assertions: an SQL error, a plan not met. */
  problem?: string;
  lines: string[];
}

export async function runPgtapFiles(databaseUrl: string, files: URL[]): Promise<TapFile[]> {
  const results: TapFile[] = [];
  for (const file of files) {
    // One connection per file, as pg_prove has: nothing a file leaves behind reaches the next.
    const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
    const name = file.pathname.split("/").pop()!;
    const text = await Deno.readTextFile(file);
    try {
      results.push(tally(name, tapLines(await sql.unsafe(text).simple())));
    } catch (error) {
      // The answers before the error are lost with it; where it happened is not.
      const position = Number((error as { position?: string }).position);
      const line = position ? ` at line ${text.slice(0, position - 1).split("\n").length}` : "";
      results.push({ ...tally(name, []), problem: `SQL error${line}: ${(error as Error).message}` });
    } finally {
      await sql.end({ timeout: 5 });
    }
  }
  return results;
}

/** Every text a file's statements returned, split into lines: a multi-statement answer is a list of results. */
function tapLines(answer: unknown): string[] {
  const results = Array.isArray(answer) && answer.every(Array.isArray) ? answer : [answer];
  return (results as Record<string, unknown>[][]).flatMap((rows) =>
    rows.flatMap((row) => Object.values(row).filter((value) => typeof value === "string") as string[])
  ).flatMap((text) => text.split("\n"));
}

function tally(file: string, lines: string[]): TapFile {
  const planned = Number(lines.find((line) => /^1\.\.\d+$/.test(line))?.slice(3) ?? NaN);
  const skipped = lines.filter((line) => /^ok \d+.*# skip/i.test(line)).length;
  const passed = lines.filter((line) => /^ok \d+/.test(line)).length - skipped;
  const failed = lines.filter((line) => /^not ok \d+/.test(line)).length;
  const ran = passed + failed + skipped;
  const complaint = lines.find((line) => /^# Looks like/.test(line));
  const problem = !lines.length
    ? "no TAP output"
    : Number.isNaN(planned)
    ? "no plan"
    : ran !== planned
    ? `planned ${planned} assertions, ran ${ran}`
    : complaint?.slice(2);
  return { file, passed, failed, skipped, problem, lines };
}

/** One line per file; the whole TAP output of a file that did not pass. */
export function describeTapFile(result: TapFile): string {
  const ok = !failuresOf(result) && !result.problem;
  const counts = `${result.passed} passed, ${result.failed} failed${
    result.skipped ? `, ${result.skipped} skipped` : ""
  }`;
  const head = `  ${result.file.padEnd(34, ".")} ${ok ? "ok" : "FAILED"} (${counts}${
    result.problem ? `; ${result.problem}` : ""
  })`;
  return ok ? head : [head, ...result.lines.map((line) => `    ${line}`)].join("\n");
}

/** What a file counts as failed: its failed and skipped assertions, else one for whatever else failed it. */
export function failuresOf(result: TapFile): number {
  const counted = result.failed + result.skipped;
  return counted || (result.problem || !result.passed ? 1 : 0);
}

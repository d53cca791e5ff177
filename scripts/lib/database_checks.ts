// Supabase's own checks over a migrated database, as the test command runs them:
//   supabase db advisors   the dashboard's Security and Performance Advisor (splinter)
//   supabase db lint       plpgsql_check over every function in public and private
// A finding fails the run, except the INFO lints that need runtime statistics, listed here with why.
import { jsonOf, supabase } from "./supabase_cli.ts";

/** INFO lints that a database made for this run cannot pass or fail: they read usage statistics. */
export const ALLOWED_INFO_LINTS: Record<string, string> = {
  unused_index:
    "counts index scans since the statistics were reset, and a database made for this run has none",
};

export interface AdvisorFinding {
  name: string;
  level: "INFO" | "WARN" | "ERROR";
  detail: string;
}

export interface AdvisorReport {
  /** Findings that fail the run. */
  failing: AdvisorFinding[];
  /** INFO findings of ALLOWED_INFO_LINTS, by lint name. */
  allowed: Record<string, number>;
}

export async function runAdvisors(databaseUrl: string): Promise<AdvisorReport> {
  const result = await supabase(
    "db",
    "advisors",
    `--remote=${databaseUrl}`,
    "--type",
    "all",
    "--level",
    "info",
    "--output-format",
    "json",
  );
  if (!result.success) throw new Error(`supabase db advisors failed:\n${result.stderr || result.stdout}`);
  const findings = jsonOf<{ results: AdvisorFinding[] }>(result).results ?? [];
  const allowed: Record<string, number> = {};
  const failing = findings.filter((finding) => {
    if (finding.level !== "INFO" || !ALLOWED_INFO_LINTS[finding.name]) return true;
    allowed[finding.name] = (allowed[finding.name] ?? 0) + 1;
    return false;
  });
  return { failing, allowed };
}

export interface LintIssue {
  function: string;
  level: "error" | "warning";
  message: string;
}

/** plpgsql_check's errors and warnings in our schemas (the CLI installs the extension for the run). */
export async function runLint(databaseUrl: string): Promise<LintIssue[]> {
  const result = await supabase(
    "db",
    "lint",
    `--remote=${databaseUrl}`,
    "--schema",
    "public,private",
    "--level",
    "warning",
    "--output-format",
    "json",
  );
  if (!result.success) throw new Error(`supabase db lint failed:\n${result.stderr || result.stdout}`);
  const report = jsonOf<{ results?: { function: string; issues: { level: string; message: string }[] }[] }>(
    result,
  );
  return (report.results ?? []).flatMap((fn) =>
    fn.issues.map((issue) => ({
      function: fn.function,
      level: issue.level as LintIssue["level"],
      message: issue.message,
    }))
  );
}

// The functions' JSON log lines made readable for a person at a terminal (`deno task dev`):
//   13:04:05.123 instagram-callback  warn  meta_call_failed step=read_user attempt=0 ms=41  [7f3a9c1e]
// The correlation id's first 8 characters end the line: search the raw logs for it.
const QUIET = new Set(["level", "event", "time", "fn", "correlation_id"]);

export function formatLogLine(fn: string, line: string): string {
  const label = fn.padEnd(18);
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(line);
  } catch {
    return `${" ".repeat(12)} ${label} ${line}`;
  }
  if (!entry || typeof entry !== "object") return `${" ".repeat(12)} ${label} ${line}`;
  const time = typeof entry.time === "string" ? entry.time.slice(11, 23) : " ".repeat(12);
  const fields = Object.entries(entry)
    .filter(([key, value]) => !QUIET.has(key) && value !== undefined && value !== null)
    .map(([key, value]) =>
      `${key}=${typeof value === "string" && !/\s/.test(value) ? value : JSON.stringify(value)}`
    );
  const correlation = typeof entry.correlation_id === "string"
    ? `  [${entry.correlation_id.slice(0, 8)}]`
    : "";
  return `${time} ${label} ${String(entry.level ?? "").padEnd(5)} ${entry.event ?? ""} ${
    fields.join(" ")
  }${correlation}`;
}

// The functions' JSON log lines made readable for a person at a terminal (`deno task dev`):
//   13:04:05.123 instagram-callback  warn  meta_call_failed step=read_user attempt=0 ms=41  [7f3a9c1e]
// The correlation id's first 8 characters end the line: search the raw logs for it.
// Whatever a request put in a line (a path with ESC codes: Hono decodes %1B in the path it logs) is
// printed with its control characters escaped, so it cannot drive the terminal.
const QUIET = new Set(["level", "event", "time", "fn", "correlation_id"]);
// Control characters (\p{Cc}: C0, DEL and C1; ESC starts a terminal's sequences, and C1's CSI, U+009B,
// does on some terminals), and the bidi controls that reorder what follows them on the screen
// (CVE-2021-42574; the set instagram-callback/usable_pages.ts strips from Meta's names, and U+061C), and
// U+2028 and U+2029, which JSON.stringify leaves raw and a terminal or log viewer may break a line at.
const CONTROL = /[\p{Cc}\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/gu;

/** `\x1b` for ESC, `\u202e` for a bidi override: visible, and inert at a terminal. */
export function escapeControls(text: string): string {
  return text.replace(CONTROL, (char) => {
    const code = char.charCodeAt(0);
    return code < 0x100
      ? `\\x${code.toString(16).padStart(2, "0")}`
      : `\\u${code.toString(16).padStart(4, "0")}`;
  });
}

export function formatLogLine(fn: string, line: string): string {
  return escapeControls(formatFields(fn, line));
}

function formatFields(fn: string, line: string): string {
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

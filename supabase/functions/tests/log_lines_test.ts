// `deno task dev`'s log printer (scripts/lib/log_lines.ts): what a request put in a log line reaches the
// terminal with its control characters escaped, so a path with ESC codes cannot clear the screen.
import assert from "node:assert/strict";
import { escapeControls, formatLogLine } from "../../../scripts/lib/log_lines.ts";

const ESC_CLEAR = "\x1b[2J";

Deno.test("a logged path with ESC codes is printed escaped, the rest of the line as before", () => {
  const line = JSON.stringify({
    level: "info",
    event: "request",
    time: "2026-12-02T13:04:05.123Z",
    fn: "instagram-connect",
    correlation_id: "7f3a9c1e-0000-4000-8000-000000000000",
    method: "GET",
    path: `/instagram-connect/${ESC_CLEAR}\x1b]0;owned\x07`,
    status: 404,
  });
  const printed = formatLogLine("instagram-connect", line);
  assert.equal(
    printed,
    "13:04:05.123 instagram-connect  info  request method=GET " +
      String.raw`path=/instagram-connect/\x1b[2J\x1b]0;owned\x07` + " status=404  [7f3a9c1e]",
  );
  assert.doesNotMatch(printed, /\p{Cc}/u, "no control character left");
});

Deno.test("every field, the event and a line that is not JSON are escaped too", () => {
  const printed = formatLogLine(
    "instagram-callback",
    JSON.stringify({ level: "warn\x1b[31m", event: `x${ESC_CLEAR}`, note: "a b\rc", bidi: "abc\u202edef" }),
  );
  assert.doesNotMatch(printed, /[\p{Cc}\u202e]/u);
  assert.match(printed, /warn\\x1b\[31m/);
  assert.match(printed, /x\\x1b\[2J/);
  assert.match(printed, /bidi=abc\\u202edef/);
  // A stray line a function printed (not JSON), e.g. an uncaught error echoing a request.
  const raw = formatLogLine("instagram-callback", `error: ${ESC_CLEAR}\x9b2J boom`);
  assert.equal(raw, `${" ".repeat(12)} instagram-callback ${String.raw`error: \x1b[2J\x9b2J boom`}`);
});

Deno.test("escapeControls leaves printable text alone, accents and emoji included", () => {
  const text = "Cabinet Dr. Müller — 🦷 path=/a/b?c=d\ttab";
  assert.equal(escapeControls(text), text.replace("\t", String.raw`\x09`));
});

Deno.test("U+2028 and U+2029 (line and paragraph separators) are printed escaped, not as line breaks", () => {
  // JSON.stringify leaves them raw, and a terminal or a log viewer may break the line there, so one
  // request's line could show as two, the second looking like a line of its own.
  const printed = formatLogLine(
    "instagram-webhook",
    JSON.stringify({ level: "info", event: "request", path: "/a\u2028b\u2029c" }),
  );
  assert.doesNotMatch(printed, /[\u2028\u2029]/);
  assert.match(printed, / path="\/a\\u2028b\\u2029c"$/);
  assert.equal(escapeControls("x\u2028y\u2029z"), String.raw`x\u2028y\u2029z`);
});

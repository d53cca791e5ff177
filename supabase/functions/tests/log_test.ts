import assert from "node:assert/strict";
import { scrub } from "../_shared/log.ts";

Deno.test("scrub redacts secret-named fields at any depth", () => {
  const out = scrub({
    access_token: "EAAx",
    nested: { client_secret: "s", state: "st", code: "c", ok: "v" },
  });
  assert.deepEqual(out, {
    access_token: "[redacted]",
    nested: { client_secret: "[redacted]", state: "[redacted]", code: "[redacted]", ok: "v" },
  });
});

Deno.test("scrub keeps the kind of a link (token_kind names a kind, holds no token); a token beside it goes", () => {
  assert.deepEqual(scrub({ token_kind: "page", previous_token_kind: "instagram_user", page_token: "EAAx" }), {
    token_kind: "page",
    previous_token_kind: "instagram_user",
    page_token: "[redacted]",
  });
});

Deno.test("scrub removes secrets from URLs inside messages, as Deno's fetch errors carry them", () => {
  const error = new TypeError(
    "error sending request for url (https://graph.facebook.com/v24.0/oauth/access_token?client_id=1&client_secret=SECRET&code=CODE123&redirect_uri=x): connection refused",
  );
  const text = JSON.stringify(scrub({ error }));
  assert.ok(!text.includes("SECRET") && !text.includes("CODE123"), text);
  assert.match(text, /client_secret=\[redacted\]/);
  assert.match(text, /client_id=1/);
});

Deno.test("scrub removes bearer tokens from strings", () => {
  assert.equal(scrub("Authorization: Bearer eyJhbGciOi.abc.def"), "Authorization: Bearer [redacted]");
});

Deno.test("scrub writes a Date as its ISO string (not {}), at any depth; an invalid Date as null", () => {
  const when = new Date("2026-12-02T11:41:57.123Z");
  assert.deepEqual(scrub({ expires_at: when, nested: { at: [when] }, bad: new Date(NaN) }), {
    expires_at: "2026-12-02T11:41:57.123Z",
    nested: { at: ["2026-12-02T11:41:57.123Z"] },
    bad: null,
  });
  assert.match(JSON.stringify(scrub({ expires_at: when })), /"expires_at":"2026-12-02T11:41:57\.123Z"/);
});

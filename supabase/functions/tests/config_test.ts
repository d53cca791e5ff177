// Start-up validation: a missing or invalid variable stops the function with a message naming it,
// and no value (most are secrets) is ever printed.
import assert from "node:assert/strict";
import { bootFailure } from "../../../scripts/lib/function_process.ts";

const APP_SECRET = "a-very-secret-app-secret-value-123";
const SHORT_KEY = "c2hvcnQta2V5";

const base = {
  INSTAGRAM_APP_SECRET: APP_SECRET,
  INSTAGRAM_REDIRECT_URI: "http://example.com/functions/v1/instagram-callback",
  INSTAGRAM_TOKEN_ENCRYPTION_KEY: SHORT_KEY,
  INSTAGRAM_STATE_TTL_SECONDS: "5",
  SUPABASE_URL: "http://127.0.0.1:54321",
  SUPABASE_SECRET_KEYS: '{"default":"sb_secret_value_never_printed"}',
  SUPABASE_PUBLISHABLE_KEYS: '{"default":"sb_publishable_x"}',
  SUPABASE_JWKS: '{"keys":[]}',
};

for (const name of ["instagram-connect", "instagram-callback"]) {
  Deno.test(`${name} refuses to start on bad configuration and names each variable`, async () => {
    const { code, output } = await bootFailure(name, base);
    assert.notEqual(code, 0, "start-up failed");
    assert.match(output, /INSTAGRAM_APP_ID is required/);
    assert.match(output, /INSTAGRAM_REDIRECT_URI must be an https URL/);
    assert.match(output, /INSTAGRAM_TOKEN_ENCRYPTION_KEY must be 32 random bytes/);
    assert.match(output, /INSTAGRAM_STATE_TTL_SECONDS/);
    for (const secret of [APP_SECRET, SHORT_KEY, "sb_secret_value_never_printed"]) {
      assert.ok(!output.includes(secret), "no configured value is printed");
    }
  });
}

Deno.test("a malformed SUPABASE_JWKS is a start-up error, not 401s for every doctor later", async () => {
  const { code, output } = await bootFailure("instagram-connect", {
    ...base,
    INSTAGRAM_APP_ID: "1234567890",
    INSTAGRAM_REDIRECT_URI: "https://example.com/cb",
    INSTAGRAM_TOKEN_ENCRYPTION_KEY: "ZGV2LW9ubHkta2V5LWRvLW5vdC11c2UtaW4tcHJvZCE=",
    INSTAGRAM_STATE_TTL_SECONDS: "600",
    SUPABASE_JWKS: "{not json",
  });
  assert.notEqual(code, 0);
  assert.match(output, /SUPABASE_JWKS or SUPABASE_JWKS_URL is malformed/);
});

Deno.test("the encryption key is read in standard and URL-safe base64, padded or not", async () => {
  const { decodeBase64 } = await import("../_shared/config.ts");
  const bytes = Uint8Array.from({ length: 32 }, (_, i) => (i * 37 + 250) % 256); // yields '+' and '/'
  const standard = btoa(String.fromCharCode(...bytes));
  assert.match(standard, /[+/]/);
  for (
    const form of [standard, standard.replace(/=+$/, ""), standard.replace(/\+/g, "-").replace(/\//g, "_")]
  ) {
    assert.deepEqual(decodeBase64(form), bytes, form);
  }
});

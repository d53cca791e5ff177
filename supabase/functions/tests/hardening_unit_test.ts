// What needs no stack: transient SQLSTATEs mapped to 503, the secret-key check against every variant of
// a key, and ciphertexts relabelled to another format, key or row.
import assert from "node:assert/strict";
import { Hono } from "hono";
import { CONFIG_PARTS, loadConfig } from "../_shared/config.ts";
import { toAppError } from "../_shared/database.ts";
import { asAppError, jsonError } from "../_shared/http/error_response.ts";
import { type AppEnv, requestContext } from "../_shared/http/request_context.ts";
import { requireSecretKey } from "../_shared/http/secret_key_auth.ts";
import { importTokenKeyring } from "../_shared/crypto/page_token.ts";

// transient SQLSTATEs outside the list answer 500 internal_error ("contact support") instead of a
// retryable 503: a disk I/O error (58030) means the database cannot write now; a lock timeout (55P03),
// a deadlock (40P01, possible between a lease update and a finish) or a serialization failure (40001)
// pass on retry.
Deno.test("transient SQLSTATEs (58030, 55P03, 40P01, 40001) are retryable 503s, not internal_error", () => {
  const wrong = ["58030", "55P03", "40P01", "40001"].filter((code) =>
    toAppError({ code, message: "m" }, 500).status !== 503
  );
  assert.deepEqual(wrong, [], "answered 500 internal_error");
});

const base = {
  INSTAGRAM_APP_ID: "1234567890",
  INSTAGRAM_APP_SECRET: "a-very-secret-app-secret-value-123",
  INSTAGRAM_REDIRECT_URI: "https://project.supabase.co/functions/v1/instagram-callback",
  INSTAGRAM_TOKEN_ENCRYPTION_KEY: "ZGV2LW9ubHkta2V5LWRvLW5vdC11c2UtaW4tcHJvZCE=",
  INSTAGRAM_WEBHOOK_VERIFY_TOKEN: "a-verify-token-for-these-tests",
  SUPABASE_URL: "https://project.supabase.co",
};
const SECRET = "sb_secret_value_never_printed_0123";
const LEGACY_JWT = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.c2lnbmF0dXJl";

async function status(env: Record<string, string>, headers: Record<string, string>) {
  const app = new Hono<AppEnv>();
  app.use("*", requestContext("instagram-maintenance"));
  app.post("/", requireSecretKey(loadConfig(CONFIG_PARTS, env)), (c) => c.json({ ran: true }));
  app.onError((error, c) => jsonError(c, asAppError(c, error)));
  return (await app.request("/", { method: "POST", headers })).status;
}

Deno.test("the secret-key check refuses every variant but the configured key", async () => {
  const env = {
    ...base,
    SUPABASE_SECRET_KEYS: JSON.stringify({ default: SECRET, other: "sb_secret_other_key_0000000000" }),
    SUPABASE_SERVICE_ROLE_KEY: LEGACY_JWT,
  };
  assert.equal(await status(env, { apikey: SECRET }), 200);
  for (
    const headers of <Record<string, string>[]> [
      { apikey: LEGACY_JWT }, // legacy service_role JWT while secret keys exist
      { authorization: `Bearer ${LEGACY_JWT}` },
      { authorization: `Bearer ${SECRET}` }, // the key in Authorization
      { apikey: "sb_secret_other_key_0000000000" }, // another secret key
      { apikey: SECRET.slice(0, -1) },
      { apikey: `${SECRET}, ${SECRET}` },
      { apikey: "[object Object]" },
      { apikey: "undefined" },
    ]
  ) {
    assert.equal(await status(env, headers), 401, JSON.stringify(headers));
  }
  // A named key: only that one.
  const named = { ...env, INSTAGRAM_MAINTENANCE_KEY_NAME: "other" };
  assert.equal(await status(named, { apikey: SECRET }), 401);
  assert.equal(await status(named, { apikey: "sb_secret_other_key_0000000000" }), 200);
  // A named key that does not exist: refused at start-up.
  assert.throws(() => loadConfig(CONFIG_PARTS, { ...env, INSTAGRAM_MAINTENANCE_KEY_NAME: "nope" }));
});

Deno.test("relabelled ciphertexts do not decrypt (v2 <-> v1, another key id, another row)", async () => {
  const key = crypto.getRandomValues(new Uint8Array(32));
  const ring = await importTokenKeyring([{ id: "legacy", key }, { id: "k2", key }]);
  const binding = { doctorId: "d", pageId: "1" };
  const v2 = await ring.encrypt("EAAB-token", binding); // v2.legacy.iv.ct
  const [, , iv, ct] = v2.split(".");
  for (const relabelled of [`v1.${iv}.${ct}`, `v2.k2.${iv}.${ct}`, `v2.legacy.${iv}.${ct}.x`]) {
    await assert.rejects(ring.decrypt(relabelled, binding), relabelled);
  }
  await assert.rejects(ring.decrypt(v2, { doctorId: "e", pageId: "1" }));
  assert.equal(await ring.decrypt(v2, binding), "EAAB-token");
  await assert.rejects(importTokenKeyring([{ id: "a", key }, { id: "a", key }]));
  await assert.rejects(importTokenKeyring([{ id: "A", key }]));
});

// The races and poison rows an attacker's review found in instagram-maintenance and the secret-key check:
// a flag or an unreadable token during a run, and a key name from Object.prototype.
import assert from "node:assert/strict";
import { Hono } from "hono";
import { LOCAL_SECRET_KEY, type LocalStack, tokenKeyringOf } from "../../../scripts/lib/local_stack.ts";
import { CONFIG_PARTS, loadConfig } from "../_shared/config.ts";
import { asAppError, jsonError } from "../_shared/http/error_response.ts";
import { type AppEnv, requestContext } from "../_shared/http/request_context.ts";
import { requireSecretKey } from "../_shared/http/secret_key_auth.ts";
import { link, linkOf, newDoctor, stackTest, withStack } from "./_support.ts";

async function run(stack: LocalStack) {
  const response = await fetch(stack.functionUrl("instagram-maintenance"), {
    method: "POST",
    headers: { apikey: LOCAL_SECRET_KEY },
  });
  return { status: response.status, body: await response.json() };
}

// ---------------------------------------------------------------------------------------------------
// INSTAGRAM_MAINTENANCE_KEY_NAME names an Object.prototype member ("constructor", "toString", ...).
// config.ts's check `!keys[keyName]` and @supabase/server's `keys[keyName] !== undefined` both see the
// inherited function, so start-up accepts it and the key compared is String(Object) — a public string.
// ---------------------------------------------------------------------------------------------------
Deno.test("a key name inherited from Object.prototype is refused at start-up, never matched", async () => {
  const env = {
    INSTAGRAM_APP_ID: "1234567890",
    INSTAGRAM_APP_SECRET: "a-very-secret-app-secret-value-123",
    INSTAGRAM_REDIRECT_URI: "https://project.supabase.co/functions/v1/instagram-callback",
    INSTAGRAM_TOKEN_ENCRYPTION_KEY: "ZGV2LW9ubHkta2V5LWRvLW5vdC11c2UtaW4tcHJvZCE=",
    INSTAGRAM_WEBHOOK_VERIFY_TOKEN: "a-verify-token-for-these-tests",
    SUPABASE_URL: "https://project.supabase.co",
    SUPABASE_SECRET_KEYS: JSON.stringify({ default: "sb_secret_value_never_printed_0123" }),
    INSTAGRAM_MAINTENANCE_KEY_NAME: "constructor",
  };
  let config;
  try {
    config = loadConfig(CONFIG_PARTS, env);
  } catch {
    return; // refused at start-up: the rule holds
  }
  const app = new Hono<AppEnv>();
  app.use("*", requestContext("instagram-maintenance"));
  app.post("/", requireSecretKey(config), (c) => c.json({ ran: true }));
  app.onError((error, c) => jsonError(c, asAppError(c, error)));
  const answer = await app.request("/", { method: "POST", headers: { apikey: String(Object) } });
  assert.equal(
    answer.status,
    401,
    "the apikey 'function Object() { [native code] }' must not run maintenance",
  );
});

Deno.test("instagram-maintenance races and poison rows", stackTest, async (t) => {
  await withStack({ env: { INSTAGRAM_META_MAX_RETRIES: "0" } }, async (stack, sql) => {
    const meta = stack.meta;

    // (A disconnect while a run holds the link, which restored its subscription meanwhile: every
    // interleaving is in subscription_races_test.ts.)

    // -------------------------------------------------------------------------------------------------
    // a 190 seen elsewhere (flag_instagram_link: disconnect/finish/webhook worker) while a run holds
    // the lease is overwritten by the run's older "active" outcome: record_instagram_link_check only
    // compares the token and the lease, not whether the link was flagged after the check began.
    // -------------------------------------------------------------------------------------------------
    await t.step(
      "a flag raised during a run's lease is not overwritten by the run's older outcome",
      async () => {
        const doctor = await newDoctor(stack, sql);
        const user = meta.newUser(1);
        assert.equal((await link(stack, doctor.token, user.userId)).finished.status, 200);
        const leaseId = crypto.randomUUID();
        await sql`update public.doctor_instagram set lease_id = ${leaseId}, lease_until = now() + interval '5 minutes'
        where doctor_id = ${doctor.id}`;
        const { instagram_access_token: token } = await linkOf(sql, doctor.id);
        // 1. the run's debug_token said "valid" (not recorded yet); 2. the webhook worker gets a 190:
        const [{ flagged }] =
          await sql`select public.flag_instagram_link(${doctor.id}, ${token}, 'password_changed') as flagged`;
        assert.equal(flagged, true);
        // 3. the run records what it saw before the 190:
        const [{ outcome }] = await sql`select public.record_instagram_link_check(
        ${doctor.id}, ${leaseId}, ${token}, null) as outcome`;
        const row = await linkOf(sql, doctor.id);
        assert.deepEqual(
          [row.status, row.status_reason],
          ["needs_reconnect", "password_changed"],
          `the newer 190 flag was undone by a stale check (record answered ${outcome})`,
        );
      },
    );

    // -------------------------------------------------------------------------------------------------
    // one stored token that does not decrypt (a ciphertext moved to another row, a wrong key under a
    // listed id) fails reencrypt()'s Promise.all: every run answers 500 after its checks, re-encrypts
    // nothing of its batch (the same rows come first every run, ordered by doctor_id), and never runs
    // the sweeps (event retention). token_key_usage() cannot see it: the key id is listed.
    // -------------------------------------------------------------------------------------------------
    await t.step(
      "one undecryptable token stops neither re-encryption of the others nor the sweeps",
      async () => {
        const ring = await tokenKeyringOf(stack.env);
        const newKey = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))));
        const legacyKey = stack.env.INSTAGRAM_TOKEN_ENCRYPTION_KEY;
        assert.ok(legacyKey, "the stack runs on the single legacy key");
        const victim = await newDoctor(stack, sql);
        const user = meta.newUser(1);
        assert.equal((await link(stack, victim.token, user.userId)).finished.status, 200);
        // A legacy ciphertext bound to another doctor, planted in a row that sorts first.
        const poison = await newDoctor(stack, sql);
        const poisonId = "00000000-0000-4000-8000-000000000000";
        await sql`update auth.users set id = ${poisonId} where id = ${poison.id}`;
        await sql`insert into public.doctor_instagram (doctor_id, instagram_page_id, instagram_access_token, instagram_business_account_id)
        values (${poisonId}, '5550001', ${await ring.encrypt("EAAB-some-token", {
          doctorId: victim.id,
          pageId: "5550001",
        })}, '17890001')`;
        try {
          await stack.restart("instagram-maintenance", {
            INSTAGRAM_TOKEN_ENCRYPTION_KEY: "",
            INSTAGRAM_TOKEN_ENCRYPTION_KEYS: `k9:${newKey},legacy:${legacyKey}`,
          });
          const answer = await run(stack);
          assert.equal(answer.status, 200, `one bad row fails the whole run: ${JSON.stringify(answer.body)}`);
          assert.ok(answer.body.reencrypted >= 1, "the victim's good token is re-encrypted");
        } finally {
          await sql`delete from public.doctor_instagram where doctor_id = ${poisonId}`;
          await stack.restart("instagram-maintenance", {
            INSTAGRAM_TOKEN_ENCRYPTION_KEY: "",
            INSTAGRAM_TOKEN_ENCRYPTION_KEYS: `legacy:${legacyKey},k9:${newKey}`,
          });
          while ((await run(stack)).body.reencrypted > 0) { /* back under legacy for the other tests */ }
        }
      },
    );
  });
});

// instagram-maintenance on Instagram Login links (token_kind instagram_user): checked at the fake
// graph.instagram.com (/me, /me/subscribed_apps), never with debug_token; a token at least 24 hours old
// with fewer than 30 days left is refreshed once, stored encrypted under the primary key bound to the
// doctor and the account; a refresh Meta refuses, an expired token and a dead token each flag the link
// with an Instagram reason; a lost subscription is restored; no token reaches a log line.
import assert from "node:assert/strict";
import type postgres from "postgres";
import { seedInstagramLink } from "../../../scripts/lib/dev_stack.ts";
import { LOCAL_SECRET_KEY, type LocalStack, tokenKeyringOf } from "../../../scripts/lib/local_stack.ts";
import { auditOf, linkOf, newDoctor, stackTest, withStack } from "./_support.ts";

const DAY_MS = 24 * 60 * 60 * 1000;
const SCOPES = ["instagram_business_basic", "instagram_business_manage_messages"];
const FIELDS = ["messages", "messaging_seen", "message_reactions", "messaging_postbacks"];
const NEW_KEY = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))));

async function run(stack: LocalStack) {
  const response = await fetch(stack.functionUrl("instagram-maintenance"), {
    method: "POST",
    headers: { apikey: LOCAL_SECRET_KEY },
  });
  return { status: response.status, body: await response.json() };
}

/**
 * A doctor with an Instagram Login link to a new fake account, its token `ageMs` old at the fake and in
 * the table (token_refreshed_at), its expiry the fake's. Returns the plain token (test side only).
 */
async function igLinked(stack: LocalStack, sql: postgres.Sql, ageMs: number) {
  const ig = stack.meta.instagram;
  const doctor = await newDoctor(stack, sql);
  const name = `ig_${crypto.randomUUID().slice(0, 8)}`;
  const account = ig.addAccount(name);
  const token = ig.longLivedToken(name, SCOPES, FIELDS);
  if (ageMs > 0) ig.ageToken(token, ageMs);
  await seedInstagramLink(sql, await tokenKeyringOf(stack.env), doctor.id, account, token);
  const expiresAt = new Date(ig.expiresAt(token)!);
  const refreshedAt = new Date(Date.now() - ageMs);
  await sql`update public.doctor_instagram set token_expires_at = ${expiresAt}, token_refreshed_at = ${refreshedAt}
    where doctor_id = ${doctor.id}`;
  return { doctor, name, account, token, expiresAt };
}

Deno.test("instagram-maintenance: Instagram Login links", stackTest, async (t) => {
  await withStack(
    { env: { INSTAGRAM_META_TIMEOUT_MS: "1000", INSTAGRAM_META_MAX_RETRIES: "0" } },
    async (stack, sql) => {
      const meta = stack.meta;
      const ig = meta.instagram;
      // Each step starts without the links of the one before: a due link left behind would be refreshed
      // (or refused) again and move the call counters.
      const mine: string[] = [];
      const forgetMine = async () => {
        if (mine.length > 0) await sql`delete from public.doctor_instagram where doctor_id in ${sql(mine)}`;
        mine.length = 0;
      };
      let output = "";

      await t.step("an old token: refreshed, stored encrypted, ~60 days, audited without it", async () => {
        await forgetMine();
        const link = await igLinked(stack, sql, 35 * DAY_MS);
        mine.push(link.doctor.id);
        const before = await linkOf(sql, link.doctor.id);
        // The database is shared with the other tests: their Page links may be checked in this run too.
        const [{ pages }] = await sql`select count(*)::int as pages from public.doctor_instagram
          where token_kind = 'page'`;
        const debugTokens = meta.calls.debug_token;
        const answer = await run(stack);
        assert.equal(answer.status, 200, JSON.stringify(answer.body));
        assert.ok(answer.body.refreshed >= 1, JSON.stringify(answer.body));
        assert.ok(
          meta.calls.debug_token - debugTokens <= pages,
          "debug_token is asked about Page links only",
        );
        const after = await linkOf(sql, link.doctor.id);
        assert.notEqual(after.instagram_access_token, before.instagram_access_token);
        const plain = await (await tokenKeyringOf(stack.env)).decrypt(after.instagram_access_token, {
          doctorId: link.doctor.id,
          instagramAccountId: link.account.userId,
        });
        assert.equal(plain, ig.newestToken(link.name));
        assert.notEqual(plain, link.token);
        const days = (after.token_expires_at.getTime() - Date.now()) / DAY_MS;
        assert.ok(days > 59 && days <= 60, `expires in ${days} days`);
        assert.ok(Date.now() - after.token_refreshed_at.getTime() < 60_000);
        assert.equal(after.updated_at.getTime(), before.updated_at.getTime(), "updated_at unchanged");
        assert.equal(after.status, "active");
        const audit = await auditOf(sql, link.doctor.id);
        const refreshed = audit.filter((row) => row.action === "instagram.token_refreshed");
        assert.equal(refreshed.length, 1, JSON.stringify(audit.map((row) => row.action)));
        const text = JSON.stringify(audit);
        for (const secret of [plain, link.token, after.instagram_access_token]) {
          assert.ok(!text.includes(secret), "no token in the audit log");
        }
      });

      await t.step("a fresh token (< 24 h) is never refreshed", async () => {
        await forgetMine();
        const link = await igLinked(stack, sql, 0);
        mine.push(link.doctor.id);
        const refreshes = meta.calls.ig_refresh;
        const answer = await run(stack);
        assert.equal(answer.status, 200);
        assert.equal(meta.calls.ig_refresh, refreshes);
        const after = await linkOf(sql, link.doctor.id);
        assert.equal(after.status, "active");
        assert.ok(after.checked_at, "it was checked");
      });

      await t.step("more than 30 days left: not refreshed", async () => {
        await forgetMine();
        const link = await igLinked(stack, sql, 2 * DAY_MS);
        mine.push(link.doctor.id);
        const before = await linkOf(sql, link.doctor.id);
        const refreshes = meta.calls.ig_refresh;
        assert.equal((await run(stack)).status, 200);
        assert.equal(meta.calls.ig_refresh, refreshes);
        const after = await linkOf(sql, link.doctor.id);
        assert.equal(after.instagram_access_token, before.instagram_access_token);
        assert.ok(after.checked_at);
      });

      await t.step("a refresh Meta refuses: instagram_refresh_failed, reconnect by the expiry", async () => {
        await forgetMine();
        // The table says 35 days old; the fake's token is new, so Meta refuses the refresh (code 100).
        const link = await igLinked(stack, sql, 0);
        mine.push(link.doctor.id);
        const expiresAt = new Date(Date.now() + 25 * DAY_MS);
        await sql`update public.doctor_instagram set token_refreshed_at = now() - interval '35 days',
          token_expires_at = ${expiresAt} where doctor_id = ${link.doctor.id}`;
        const answer = await run(stack);
        assert.equal(answer.status, 200);
        const after = await linkOf(sql, link.doctor.id);
        assert.equal(after.status, "needs_reconnect");
        assert.equal(after.status_reason, "instagram_refresh_failed");
        assert.equal(after.reconnect_by.getTime(), expiresAt.getTime());
      });

      await t.step("an expired token: instagram_token_expired, not refreshed", async () => {
        await forgetMine();
        const link = await igLinked(stack, sql, 61 * DAY_MS);
        mine.push(link.doctor.id);
        ig.expireToken(link.token);
        await sql`update public.doctor_instagram set token_expires_at = now() - interval '1 hour'
          where doctor_id = ${link.doctor.id}`;
        const refreshes = meta.calls.ig_refresh;
        assert.equal((await run(stack)).status, 200);
        assert.equal(meta.calls.ig_refresh, refreshes);
        const after = await linkOf(sql, link.doctor.id);
        assert.equal(after.status, "needs_reconnect");
        assert.equal(after.status_reason, "instagram_token_expired");
      });

      await t.step("190 on /me: instagram_token_invalid", async () => {
        await forgetMine();
        const link = await igLinked(stack, sql, 0);
        mine.push(link.doctor.id);
        ig.killToken(link.token);
        assert.equal((await run(stack)).status, 200);
        const after = await linkOf(sql, link.doctor.id);
        assert.equal(after.status, "needs_reconnect");
        assert.equal(after.status_reason, "instagram_token_invalid");
      });

      await t.step("a lost subscription is restored, the link stays active", async () => {
        await forgetMine();
        const link = await igLinked(stack, sql, 0);
        mine.push(link.doctor.id);
        ig.dropSubscription(link.name);
        const answer = await run(stack);
        assert.equal(answer.status, 200);
        assert.ok(answer.body.restored >= 1, JSON.stringify(answer.body));
        assert.deepEqual([...ig.account(link.name).subscription ?? []].sort(), [...FIELDS].sort());
        assert.equal((await linkOf(sql, link.doctor.id)).status, "active");
      });

      await t.step(
        "a refresh that may pass (Meta 500): failed, left as it was, refreshed next run",
        async () => {
          await forgetMine();
          const link = await igLinked(stack, sql, 35 * DAY_MS);
          mine.push(link.doctor.id);
          const before = await linkOf(sql, link.doctor.id);
          meta.inject("ig_refresh", { status: 500 });
          const answer = await run(stack);
          assert.equal(answer.status, 200);
          assert.ok(answer.body.failed >= 1, JSON.stringify(answer.body));
          const after = await linkOf(sql, link.doctor.id);
          assert.equal(after.instagram_access_token, before.instagram_access_token);
          assert.equal(after.status, "active");
          const again = await run(stack);
          assert.ok(again.body.refreshed >= 1, JSON.stringify(again.body));
          assert.notEqual(
            (await linkOf(sql, link.doctor.id)).instagram_access_token,
            before.instagram_access_token,
          );
        },
      );

      await t.step("/me answers another account: instagram_token_invalid", async () => {
        await forgetMine();
        const link = await igLinked(stack, sql, 0);
        mine.push(link.doctor.id);
        ig.account(link.name).userId = "17841999999999999";
        assert.equal((await run(stack)).status, 200);
        const after = await linkOf(sql, link.doctor.id);
        assert.equal(after.status, "needs_reconnect");
        assert.equal(after.status_reason, "instagram_token_invalid");
      });

      await t.step("two runs at once refresh once", async () => {
        await forgetMine();
        const link = await igLinked(stack, sql, 35 * DAY_MS);
        mine.push(link.doctor.id);
        const refreshes = meta.calls.ig_refresh;
        const answers = await Promise.all([run(stack), run(stack)]);
        for (const answer of answers) assert.equal(answer.status, 200, JSON.stringify(answer.body));
        assert.equal(meta.calls.ig_refresh, refreshes + 1);
        assert.equal(answers[0].body.refreshed + answers[1].body.refreshed, 1);
        const audit = await auditOf(sql, link.doctor.id);
        assert.equal(audit.filter((row) => row.action === "instagram.token_refreshed").length, 1);
      });

      output += stack.functions["instagram-maintenance"].output();

      await t.step("after rotation: the new token under the primary key; others re-encrypted", async () => {
        await forgetMine();
        const resting = await igLinked(stack, sql, 0);
        const due = await igLinked(stack, sql, 35 * DAY_MS);
        mine.push(resting.doctor.id, due.doctor.id);
        const legacy = stack.env.INSTAGRAM_TOKEN_ENCRYPTION_KEY;
        const env = {
          INSTAGRAM_TOKEN_ENCRYPTION_KEY: "",
          INSTAGRAM_TOKEN_ENCRYPTION_KEYS: `k2:${NEW_KEY},legacy:${legacy}`,
        };
        await stack.restart("instagram-maintenance", env);
        const answer = await run(stack);
        assert.equal(answer.status, 200, JSON.stringify(answer.body));
        assert.ok(answer.body.refreshed >= 1);
        const ring = await tokenKeyringOf({ ...stack.env, ...env });
        for (const link of [resting, due]) {
          const row = await linkOf(sql, link.doctor.id);
          assert.equal(ring.keyIdOf(row.instagram_access_token), "k2");
          const plain = await ring.decrypt(row.instagram_access_token, {
            doctorId: link.doctor.id,
            instagramAccountId: link.account.userId,
          });
          assert.equal(plain, link === due ? ig.newestToken(due.name) : resting.token);
        }
        output += stack.functions["instagram-maintenance"].output();
        // And back under legacy, the key the other tests' stacks hold: they share this database, and the run
        // above re-encrypted their links too.
        await stack.restart("instagram-maintenance", {
          INSTAGRAM_TOKEN_ENCRYPTION_KEY: "",
          INSTAGRAM_TOKEN_ENCRYPTION_KEYS: `legacy:${legacy},k2:${NEW_KEY}`,
        });
        while ((await run(stack)).body.reencrypted > 0) { /* a batch per run */ }
        const [{ k2 }] = await sql`select count(*)::int as k2 from public.doctor_instagram
          where instagram_access_token like 'v2.k2.%'`;
        assert.equal(k2, 0);
        output += stack.functions["instagram-maintenance"].output();
      });

      await t.step("no token in any log line", () => {
        assert.match(output, /"event":"token_refreshed"/);
        const secrets = [...meta.secrets].filter((secret) => secret.startsWith("IGAA"));
        assert.ok(secrets.length >= 10, `${secrets.length} Instagram tokens to look for`);
        for (const secret of secrets) {
          assert.ok(!output.includes(secret), `a token leaked into the logs: ${secret.slice(0, 8)}...`);
        }
      });

      await forgetMine();
    },
  );
});

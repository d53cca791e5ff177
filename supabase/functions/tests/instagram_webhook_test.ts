// instagram-webhook with both apps' secrets: a delivery is taken as the app's whose secret signed it,
// and stored only for links made through that app's path (an Instagram Login link trusts the Instagram
// app, a Page link the Facebook app). A forgery under neither secret is 401. No payload in the logs.
import assert from "node:assert/strict";
import type postgres from "postgres";
import { seedInstagramLink } from "../../../scripts/lib/dev_stack.ts";
import {
  deliverInstagramLoginWebhook,
  deliverWebhook,
  directMessage,
  instagramDelivery,
} from "../../../scripts/lib/fake_meta_webhooks.ts";
import { type LocalStack, tokenKeyringOf } from "../../../scripts/lib/local_stack.ts";
import { databaseUrl, newDoctor, pageLinkedDoctor, stackTest, withStack } from "./_support.ts";

const unique = () => String(Math.floor(Math.random() * 1e12)).padStart(12, "0");

/** A doctor linked through Instagram Login (seeded): professional id `accountId`, app-scoped `userId`. */
async function instagramDoctor(stack: LocalStack, sql: postgres.Sql) {
  const doctor = await newDoctor(stack, sql);
  const n = unique();
  const account = { userId: `178${n}`, id: `26${n}`, username: `ig_${n}` };
  await seedInstagramLink(
    sql,
    await tokenKeyringOf(stack.env),
    doctor.id,
    account,
    `IGAA${n}`,
  );
  return { ...doctor, accountId: account.userId };
}

/** A doctor linked through the Facebook path (fake Meta), to a Page with an Instagram account. */
const pageDoctor = (stack: LocalStack, sql: postgres.Sql) => pageLinkedDoctor(stack, sql, "179");

const count = async (sql: postgres.Sql, doctorId: string) =>
  (await sql`select count(*)::int as n from public.instagram_events where doctor_id = ${doctorId}`)[
    0
  ].n;

Deno.test("instagram-webhook: per-app secrets", stackTest, async (t) => {
  await withStack({}, async (stack, sql) => {
    const url = stack.functionUrl("instagram-webhook");
    const facebookSecret = stack.env.INSTAGRAM_APP_SECRET;
    const instagramSecret = stack.env.INSTAGRAM_LOGIN_APP_SECRET;
    assert.notEqual(facebookSecret, instagramSecret);
    const ig = await instagramDoctor(stack, sql);
    const fb = await pageDoctor(stack, sql);

    await t.step(
      "an Instagram Login account's delivery signed with the Instagram secret is stored",
      async () => {
        const body = instagramDelivery([{
          accountId: ig.accountId,
          items: [directMessage(ig.accountId, "901", "IG-PAYLOAD-one")],
        }]);
        const answer = await deliverInstagramLoginWebhook(url, {
          instagramAppSecret: instagramSecret,
        }, body);
        assert.equal(answer.status, 200);
        const result = await answer.json();
        assert.equal(result.stored, 1);
        assert.equal(result.wrong_app_events, 0);
        assert.equal(await count(sql, ig.id), 1);
      },
    );

    await t.step(
      "the same account's delivery signed with the Facebook secret is not stored",
      async () => {
        const body = instagramDelivery([{
          accountId: ig.accountId,
          items: [directMessage(ig.accountId, "902", "IG-PAYLOAD-two")],
        }]);
        const answer = await deliverWebhook(url, facebookSecret, body);
        assert.equal(answer.status, 200);
        const result = await answer.json();
        assert.equal(result.stored, 0);
        assert.equal(result.wrong_app_events, 1);
        assert.equal(await count(sql, ig.id), 1);
      },
    );

    await t.step(
      "a Page link's delivery signed with the Instagram secret is not stored; Facebook's is",
      async () => {
        const wrong = instagramDelivery([{
          accountId: fb.accountId,
          items: [directMessage(fb.accountId, "903", "FB-PAYLOAD-one")],
        }]);
        const refused = await deliverWebhook(url, instagramSecret, wrong);
        assert.equal(refused.status, 200);
        const refusedResult = await refused.json();
        assert.equal(refusedResult.stored, 0);
        assert.equal(refusedResult.wrong_app_events, 1);
        assert.equal(await count(sql, fb.id), 0);
        const right = instagramDelivery([{
          accountId: fb.accountId,
          items: [directMessage(fb.accountId, "904", "FB-PAYLOAD-two")],
        }]);
        const stored = await deliverWebhook(url, facebookSecret, right);
        assert.equal(stored.status, 200);
        assert.equal((await stored.json()).stored, 1);
        assert.equal(await count(sql, fb.id), 1);
      },
    );

    await t.step(
      "a `page` object under the Instagram secret: acknowledged, nothing stored",
      async () => {
        const body = {
          object: "page",
          entry: [{
            id: fb.accountId,
            time: Date.now(),
            messaging: [directMessage(fb.accountId, "905", "FB-PAYLOAD-three")],
          }],
        };
        const answer = await deliverWebhook(url, instagramSecret, body);
        assert.equal(answer.status, 200);
        assert.equal((await answer.json()).wrong_app_events, 1);
        assert.equal(await count(sql, fb.id), 1);
      },
    );

    await t.step(
      "a signature under neither secret is 401 and nothing is stored",
      async () => {
        const body = instagramDelivery([{
          accountId: ig.accountId,
          items: [directMessage(ig.accountId, "906", "IG-PAYLOAD-forged")],
        }]);
        const answer = await deliverWebhook(url, "not-either-app-secret", body);
        assert.equal(answer.status, 401);
        assert.equal(
          (await answer.json()).error.code,
          "webhook_signature_invalid",
        );
        assert.equal(await count(sql, ig.id), 1);
      },
    );

    await t.step(
      "the log lines hold counts and the app, never the payload",
      () => {
        const output = stack.functions["instagram-webhook"].output();
        assert.match(output, /"wrong_app_events":0,[^\n]*"app":"instagram"/);
        assert.match(output, /"wrong_app_events":1,[^\n]*"app":"facebook"/);
        for (
          const text of [
            "IG-PAYLOAD",
            "FB-PAYLOAD",
            facebookSecret,
            instagramSecret,
          ]
        ) {
          assert.ok(!output.includes(text), `"${text}" is not logged`);
        }
      },
    );
  });

  await t.step(
    "the Instagram app alone configured: its deliveries are stored, Facebook-signed ones 401",
    async () => {
      await withStack({
        env: { INSTAGRAM_APP_ID: "", INSTAGRAM_APP_SECRET: "" },
      }, async (stack, sql) => {
        const url = stack.functionUrl("instagram-webhook");
        const ig = await instagramDoctor(stack, sql);
        const body = instagramDelivery([{
          accountId: ig.accountId,
          items: [directMessage(ig.accountId, "907", "IG-PAYLOAD-alone")],
        }]);
        const answer = await deliverInstagramLoginWebhook(url, {
          instagramAppSecret: stack.env.INSTAGRAM_LOGIN_APP_SECRET,
        }, body);
        assert.equal(answer.status, 200, await answer.clone().text());
        assert.equal((await answer.json()).stored, 1);
        const forged = await deliverWebhook(
          url,
          "fb-secret-not-configured",
          body,
        );
        assert.equal(forged.status, 401);
      });
    },
  );
  assert.ok(databaseUrl);
});

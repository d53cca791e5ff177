// The Instagram app's Deauthorize and Data Deletion Request callbacks (instagram-callback/instagram/*):
// signed with the Instagram app's secret, naming the user by either stored id (which one Meta sends is
// not documented, ig_facts.md §7), removing only Instagram Login links, never a Page link.
import assert from "node:assert/strict";
import type postgres from "postgres";
import { seedInstagramLink } from "../../../scripts/lib/dev_stack.ts";
import {
  deliverInstagramLoginWebhook,
  directMessage,
  instagramDelivery,
} from "../../../scripts/lib/fake_meta_webhooks.ts";
import { type LocalStack, tokenKeyringOf } from "../../../scripts/lib/local_stack.ts";
import {
  auditOf,
  databaseUrl,
  link,
  linkOf,
  newDoctor,
  post,
  signedRequest,
  stackTest,
  withStack,
} from "./_support.ts";

const now = () => Math.floor(Date.now() / 1000);
const unique = () => String(Math.floor(Math.random() * 1e12)).padStart(12, "0");
const form = (value: string) => new URLSearchParams({ signed_request: value });

/** An Instagram Login link, seeded: `appScopedId` (/me id) and `accountId` (the professional user_id). */
async function instagramDoctor(stack: LocalStack, sql: postgres.Sql) {
  const doctor = await newDoctor(stack, sql);
  const n = unique();
  const account = { userId: `178${n}`, id: `26${n}`, username: `ig_${n}` };
  await seedInstagramLink(sql, await tokenKeyringOf(stack.env), doctor.id, account, `IGAA${n}`);
  return { ...doctor, accountId: account.userId, appScopedId: account.id };
}

Deno.test("instagram-callback: the Instagram app's Meta callbacks", stackTest, async (t) => {
  await withStack({}, async (stack, sql) => {
    const instagramSecret = stack.env.INSTAGRAM_LOGIN_APP_SECRET;
    const facebookSecret = stack.env.INSTAGRAM_APP_SECRET;
    const sign = (secret: string, userId: string, issuedAt = now()) =>
      signedRequest(secret, { algorithm: "HMAC-SHA256", issued_at: issuedAt, user_id: userId });
    const named: string[] = [];

    // A Page link whose Instagram account id is used as a user id below: it must never be touched.
    const pageDoctor = await newDoctor(stack, sql);
    const n = unique();
    const page = { id: `2${n}`, name: `Clinic ${n}`, instagram: { id: `179${n}`, username: `clinic_${n}` } };
    const linked = await link(stack, pageDoctor.token, stack.meta.addUser(`cb-${pageDoctor.id}`, [page]));
    assert.equal(linked.finished.status, 200);

    for (const by of ["appScopedId", "accountId"] as const) {
      await t.step(`deauthorize by the ${by}: the Instagram Login link goes, audited as meta`, async () => {
        const doctor = await instagramDoctor(stack, sql);
        named.push(doctor.appScopedId, doctor.accountId);
        const response = await post(
          stack,
          "instagram/deauthorize",
          form(await sign(instagramSecret, doctor[by])),
        );
        assert.equal(response.status, 200);
        assert.deepEqual(await response.json(), { deauthorized: true });
        assert.equal(await linkOf(sql, doctor.id), undefined);
        const entry = (await auditOf(sql, doctor.id)).at(-1)!;
        assert.equal(entry.action, "instagram.deauthorized");
        assert.equal(entry.actor_role, "meta");
      });
    }

    await t.step(
      "a Page link's Instagram account id on the Instagram route: the Page link stays",
      async () => {
        const response = await post(
          stack,
          "instagram/deauthorize",
          form(await sign(instagramSecret, page.instagram.id)),
        );
        assert.equal(response.status, 200);
        await response.body?.cancel();
        assert.ok(await linkOf(sql, pageDoctor.id));
      },
    );

    await t.step("a late or replayed request leaves a newer grant", async () => {
      const doctor = await instagramDoctor(stack, sql);
      named.push(doctor.appScopedId, doctor.accountId);
      const late = await post(
        stack,
        "instagram/deauthorize",
        form(await sign(instagramSecret, doctor.appScopedId, now() - 120)),
      );
      assert.equal(late.status, 200);
      await late.body?.cancel();
      assert.ok(await linkOf(sql, doctor.id), "a request issued before the grant leaves it");
    });

    await t.step("wrong app's secret: refused on either app's routes, nothing removed", async () => {
      const doctor = await instagramDoctor(stack, sql);
      named.push(doctor.appScopedId, doctor.accountId);
      for (const route of ["instagram/deauthorize", "instagram/data-deletion"]) {
        const refused = await post(stack, route, form(await sign(facebookSecret, doctor.appScopedId)));
        assert.equal(refused.status, 400);
        assert.equal((await refused.json()).error.code, "signed_request_invalid");
      }
      assert.ok(await linkOf(sql, doctor.id));
      for (const route of ["deauthorize", "data-deletion"]) {
        const refused = await post(stack, route, form(await sign(instagramSecret, doctor.appScopedId)));
        assert.equal(refused.status, 400);
        assert.equal((await refused.json()).error.code, "signed_request_invalid");
      }
    });

    await t.step(
      "data deletion: the link and its events go; a code and the shared status URL; replay same code",
      async () => {
        const doctor = await instagramDoctor(stack, sql);
        named.push(doctor.appScopedId, doctor.accountId);
        const delivered = await deliverInstagramLoginWebhook(
          stack.functionUrl("instagram-webhook"),
          { instagramAppSecret: instagramSecret },
          instagramDelivery([{
            accountId: doctor.accountId,
            items: [directMessage(doctor.accountId, "77", "hi")],
          }]),
        );
        assert.equal(delivered.status, 200);
        assert.equal((await delivered.json()).stored, 1);
        const events = async () =>
          (await sql`select count(*)::int as n from public.instagram_events where doctor_id = ${doctor.id}`)[
            0
          ].n;
        assert.equal(await events(), 1);

        const value = await sign(instagramSecret, doctor.appScopedId);
        const response = await post(stack, "instagram/data-deletion", form(value));
        assert.equal(response.status, 200);
        const body = await response.json();
        assert.match(body.confirmation_code, /^[\w-]{22}$/);
        assert.equal(
          body.url,
          `${stack.env.INSTAGRAM_REDIRECT_URI}/data-deletion?code=${body.confirmation_code}`,
        );
        assert.equal(await linkOf(sql, doctor.id), undefined);
        assert.equal(await events(), 0);

        const status = await fetch(body.url, { headers: { accept: "application/json" } });
        assert.equal(status.status, 200);
        assert.equal((await status.json()).confirmation_code, body.confirmation_code);

        const replay = await post(stack, "instagram/data-deletion", form(value));
        assert.equal(replay.status, 200);
        assert.equal((await replay.json()).confirmation_code, body.confirmation_code);
      },
    );

    await t.step("the log names none of the users", () => {
      const output = stack.functions["instagram-callback"].output();
      assert.match(output, /"app":"instagram"/);
      for (const id of named) assert.ok(!output.includes(id), `${id} is not logged`);
    });
  });

  await t.step("the Instagram app not configured: its routes answer login_path_not_configured", async () => {
    await withStack(
      { env: { INSTAGRAM_LOGIN_APP_ID: "", INSTAGRAM_LOGIN_APP_SECRET: "" } },
      async (stack) => {
        const response = await post(
          stack,
          "instagram/deauthorize",
          form(
            await signedRequest("whatever", { algorithm: "HMAC-SHA256", issued_at: now(), user_id: "123" }),
          ),
        );
        assert.equal(response.status, 404);
        assert.equal((await response.json()).error.code, "login_path_not_configured");
      },
    );
  });
  assert.ok(databaseUrl);
});

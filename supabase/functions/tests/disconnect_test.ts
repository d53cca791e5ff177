// DELETE /instagram-connect: the Page unsubscribed, the Facebook user's grant revoked unless another
// doctor's link needs it, the row deleted whatever Meta says, and the audit entry saying what Meta did.
import assert from "node:assert/strict";
import { auditOf, finish, fullFlow, link, linkOf, newDoctor, stackTest, withStack } from "./_support.ts";
import { LOCAL_PUBLISHABLE_KEY, type LocalStack } from "../../../scripts/lib/local_stack.ts";

const FAST_FAILURES = { INSTAGRAM_META_TIMEOUT_MS: "400", INSTAGRAM_CALLBACK_DEADLINE_MS: "3000" };

async function disconnect(stack: LocalStack, token: string) {
  const response = await fetch(stack.functionUrl("instagram-connect"), {
    method: "DELETE",
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  return { status: response.status, body: await response.json() };
}

Deno.test("instagram-connect disconnect", stackTest, async (t) => {
  await withStack({ env: FAST_FAILURES }, async (stack, sql) => {
    const meta = stack.meta;

    await t.step("no link: 404 not_connected; no session: 401", async () => {
      const doctor = await newDoctor(stack, sql);
      const none = await disconnect(stack, doctor.token);
      assert.equal(none.status, 404);
      assert.equal(none.body.error.code, "not_connected");
      assert.equal((await disconnect(stack, "")).status, 401);
    });

    await t.step("Meta up: unsubscribed, revoked, deleted, and the audit entry says so", async () => {
      const doctor = await newDoctor(stack, sql);
      const { userId, pages, appScopedId } = meta.newUser(1);
      assert.equal((await link(stack, doctor.token, userId)).finished.status, 200);
      assert.ok(meta.subscriptions.has(pages[0].id));

      const result = await disconnect(stack, doctor.token);
      assert.equal(result.status, 200, JSON.stringify(result.body));
      assert.deepEqual(result.body, { disconnected: true, meta: { unsubscribed: true, revoked: true } });
      assert.equal(await linkOf(sql, doctor.id), undefined);
      assert.equal(meta.subscriptions.has(pages[0].id), false, "the Page no longer sends webhooks");
      assert.deepEqual(meta.revocations.slice(-1), [appScopedId], "revoked for that Facebook user");
      assert.deepEqual(meta.permissionsOf(userId).granted, [], "the app holds no grant of theirs any more");

      const entry = (await auditOf(sql, doctor.id)).at(-1)!;
      assert.equal(entry.action, "instagram.disconnected");
      assert.equal(entry.actor_id, doctor.id);
      assert.deepEqual(entry.metadata.meta, { unsubscribed: true, revoked: true });

      assert.equal((await disconnect(stack, doctor.token)).status, 404, "a second disconnect: nothing left");
    });

    await t.step(
      "Meta failing: the row is deleted anyway, and the answer and audit say what failed",
      async () => {
        const doctor = await newDoctor(stack, sql);
        const { userId, pages } = meta.newUser(1);
        assert.equal((await link(stack, doctor.token, userId)).finished.status, 200);
        meta.inject("unsubscribe", { status: 500 }, { status: 500 }, { status: 500 });
        meta.inject("revoke", { status: 400, error: { code: 190 } });
        meta.resetCounts();

        const result = await disconnect(stack, doctor.token);
        assert.equal(result.status, 200);
        assert.deepEqual(result.body.meta, { unsubscribed: false, revoked: false });
        assert.equal(meta.calls.unsubscribe, 3, "the unsubscribe was retried");
        assert.equal(await linkOf(sql, doctor.id), undefined, "the doctor's intent wins");
        assert.ok(meta.subscriptions.has(pages[0].id), "(Meta really did not unsubscribe)");
        assert.deepEqual((await auditOf(sql, doctor.id)).at(-1)!.metadata.meta, {
          unsubscribed: false,
          revoked: false,
        });
        meta.clearFaults();
      },
    );

    await t.step("the unsubscribe never answers: bounded by the timeouts, the rest still done", async () => {
      const doctor = await newDoctor(stack, sql);
      assert.equal((await link(stack, doctor.token, meta.newUser(1).userId)).finished.status, 200);
      meta.inject("unsubscribe", { delayMs: 5_000 }, { delayMs: 5_000 }, { delayMs: 5_000 });
      const started = performance.now();
      const result = await disconnect(stack, doctor.token);
      assert.equal(result.status, 200);
      assert.deepEqual(result.body.meta, { unsubscribed: false, revoked: true });
      assert.ok(performance.now() - started < 4_000, "bounded by the deadline");
      assert.equal(await linkOf(sql, doctor.id), undefined);
      meta.clearFaults();
    });

    await t.step(
      "a practice manager linked Pages for two doctors: revoke is skipped until the last",
      async () => {
        const first = await newDoctor(stack, sql);
        const second = await newDoctor(stack, sql);
        const { userId, pages, appScopedId } = meta.newUser(2);
        assert.equal((await link(stack, first.token, userId, pages[0].id)).finished.status, 200);
        assert.equal((await link(stack, second.token, userId, pages[1].id)).finished.status, 200);

        const firstOut = await disconnect(stack, first.token);
        assert.deepEqual(firstOut.body.meta, { unsubscribed: true, revoked: "skipped" });
        assert.ok(!meta.revocations.includes(appScopedId));
        assert.ok(meta.subscriptions.has(pages[1].id), "the other doctor's Page still sends its webhooks");
        assert.ok(meta.permissionsOf(userId).granted.includes("instagram_manage_messages"));
        assert.deepEqual((await auditOf(sql, first.id)).at(-1)!.metadata.meta, {
          unsubscribed: true,
          revoked: "skipped",
        });

        const secondOut = await disconnect(stack, second.token);
        assert.deepEqual(secondOut.body.meta, { unsubscribed: true, revoked: true });
        assert.ok(meta.revocations.includes(appScopedId));
      },
    );

    await t.step("another doctor's connection still waiting to be finished keeps the grant too", async () => {
      const first = await newDoctor(stack, sql);
      const second = await newDoctor(stack, sql);
      const { userId, pages, appScopedId } = meta.newUser(2);
      assert.equal((await link(stack, first.token, userId, pages[0].id)).finished.status, 200);
      const waiting = await fullFlow(stack, second.token, userId); // the manager is halfway for doctor 2
      const out = await disconnect(stack, first.token);
      assert.deepEqual(out.body.meta, { unsubscribed: true, revoked: "skipped" });
      assert.ok(!meta.revocations.includes(appScopedId));
      const finished = await finish(stack, second.token, {
        pending: waiting.result.body.pending,
        page_id: pages[1].id,
      });
      assert.equal(finished.status, 200, "doctor 2 can still finish with the grant intact");
    });

    await t.step(
      "a finish moving the doctor to another Page while a disconnect runs: both Pages end clean",
      async () => {
        const doctor = await newDoctor(stack, sql);
        const first = meta.newUser(1);
        const second = meta.newUser(1);
        assert.equal((await link(stack, doctor.token, first.userId)).finished.status, 200);
        const waiting = await fullFlow(stack, doctor.token, second.userId);
        meta.inject("unsubscribe", { delayMs: 700 }); // the disconnect's unsubscribe of Page 1 is slow
        const disconnecting = disconnect(stack, doctor.token);
        await new Promise((resolve) => setTimeout(resolve, 150));
        const moved = await finish(stack, doctor.token, { pending: waiting.result.body.pending });
        assert.equal(moved.status, 200, "the other tab finished meanwhile");
        const out = await disconnecting;
        assert.equal(out.status, 200);
        assert.equal(await linkOf(sql, doctor.id), undefined, "the doctor ends disconnected");
        assert.equal(meta.subscriptions.has(first.pages[0].id), false);
        assert.equal(
          meta.subscriptions.has(second.pages[0].id),
          false,
          "the Page linked meanwhile is unsubscribed too",
        );
        const last = (await auditOf(sql, doctor.id)).at(-1)!;
        assert.equal(last.action, "instagram.disconnected");
        assert.equal(last.metadata.page_id, second.pages[0].id);
      },
    );

    await t.step("a doctor cannot delete the row directly (RLS), so no disconnect skips Meta", async () => {
      const doctor = await newDoctor(stack, sql);
      assert.equal((await link(stack, doctor.token, meta.newUser(1).userId)).finished.status, 200);
      const response = await fetch(`${stack.url}/rest/v1/doctor_instagram?doctor_id=eq.${doctor.id}`, {
        method: "DELETE",
        headers: { apikey: LOCAL_PUBLISHABLE_KEY, authorization: `Bearer ${doctor.token}` },
      });
      assert.equal(
        response.status,
        403,
        "permission denied (42501), as PostgREST answers an authenticated role",
      );
      assert.equal((await response.json()).code, "42501");
      assert.ok(await linkOf(sql, doctor.id), "the link is still there");
    });
  });
});

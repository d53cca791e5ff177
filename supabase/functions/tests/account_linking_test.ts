// The attacks that used to work, end to end as an attacker would try them:
// - account-linking CSRF: doctor A sends a connect URL to V; V presses Allow with V's own Facebook
//   account; the callback used to link V's Page (and a working token for it) to A;
// - code injection: A redeems a code V's browser received with A's own state, to link V's Page to A.
import assert from "node:assert/strict";
import {
  auditOf,
  callback,
  finish,
  link,
  linkOf,
  metaCallCount,
  newDoctor,
  pendingOf,
  stackTest,
  startConnect,
  withStack,
} from "./_support.ts";

Deno.test("a connect URL forwarded to someone else links nothing", stackTest, async (t) => {
  await withStack({}, async (stack, sql) => {
    const meta = stack.meta;

    await t.step(
      "V signed in: finishing A's flow is refused (403) and nothing is linked to anyone",
      async () => {
        const a = await newDoctor(stack, sql);
        const v = await newDoctor(stack, sql);
        const victim = meta.newUser(1);

        const { url } = await startConnect(stack, a.token); // A mints the URL and sends it to V
        const arrived = await callback(await meta.approve(url, victim.userId)); // V allows with V's account
        assert.equal(arrived.status, 200);
        assert.equal(await linkOf(sql, a.id), undefined, "the callback linked nothing to A");

        const refused = await finish(stack, v.token, { pending: arrived.body.pending }); // V's dashboard
        assert.equal(refused.status, 403);
        assert.equal(refused.body.error.code, "session_mismatch");
        assert.equal(await linkOf(sql, a.id), undefined);
        assert.equal(await linkOf(sql, v.id), undefined);
        assert.equal(
          (await pendingOf(sql, a.id)).length,
          0,
          "V's Page token is gone with the pending connection",
        );
        assert.deepEqual((await auditOf(sql, a.id)).map((entry) => [entry.action, entry.actor_id]), [
          ["instagram.link_refused", v.id],
        ]);

        // V's own link later works: no 409, V's Page is not held by A.
        const own = await link(stack, v.token, victim.userId);
        assert.equal(own.finished.status, 200, JSON.stringify(own.finished.body));
        assert.equal((await linkOf(sql, v.id)).instagram_page_id, victim.pages[0].id);
      },
    );

    await t.step("V not signed in: finishing needs a session, so nothing is linked", async () => {
      const a = await newDoctor(stack, sql);
      const victim = meta.newUser(1);
      const { url } = await startConnect(stack, a.token);
      const arrived = await callback(await meta.approve(url, victim.userId));
      const anonymous = await finish(stack, "", { pending: arrived.body.pending });
      assert.equal(anonymous.status, 401);
      assert.equal(await linkOf(sql, a.id), undefined);
      // The token reached only V's browser; A never sees it, and it expires unused.
      assert.equal((await pendingOf(sql, a.id))[0].used_at, null);
    });

    await t.step("A finishing A's own flow links A's Page", async () => {
      const a = await newDoctor(stack, sql);
      const own = meta.newUser(1);
      const { finished } = await link(stack, a.token, own.userId);
      assert.equal(finished.status, 200);
      assert.equal((await linkOf(sql, a.id)).instagram_page_id, own.pages[0].id);
    });
  });
});

Deno.test("a code redeemed through another flow's state is refused by Meta (PKCE)", stackTest, async (t) => {
  for (const pkce of ["on", "off"]) {
    await t.step(`INSTAGRAM_PKCE=${pkce}`, async () => {
      await withStack({ env: { INSTAGRAM_PKCE: pkce } }, async (stack, sql) => {
        const victimDoctor = await newDoctor(stack, sql);
        const attacker = await newDoctor(stack, sql);
        const victim = stack.meta.newUser(1);

        // The victim's browser receives a code for the victim's own flow...
        const victimFlow = await startConnect(stack, victimDoctor.token);
        const victimCode = new URL(await stack.meta.approve(victimFlow.url, victim.userId)).searchParams.get(
          "code",
        )!;
        // ...and the attacker replays it with a state of the attacker's own flow.
        const attackerFlow = await startConnect(stack, attacker.token);
        const injected = new URL(stack.functionUrl("instagram-callback"));
        injected.searchParams.set("code", victimCode);
        injected.searchParams.set("state", new URL(attackerFlow.url).searchParams.get("state")!);
        stack.meta.resetCounts();
        const result = await callback(injected.toString());

        if (pkce === "on") {
          assert.equal(result.status, 400, JSON.stringify(result.body));
          assert.equal(result.body.error.code, "oauth_code_invalid");
          assert.equal(metaCallCount(stack), 1, "Meta refused the code exchange; nothing after it");
          assert.equal((await pendingOf(sql, attacker.id)).length, 0);
          assert.equal(await linkOf(sql, attacker.id), undefined);
        } else {
          // Without PKCE the attack goes through, which is why PKCE is on by default.
          assert.equal(result.status, 200);
          const stolen = await finish(stack, attacker.token, { pending: result.body.pending });
          assert.equal(stolen.status, 200);
          assert.equal((await linkOf(sql, attacker.id)).instagram_page_id, victim.pages[0].id);
        }
      });
    });
  }
});

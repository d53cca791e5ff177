// The Instagram Login path (via=instagram) through instagram-connect and instagram-callback, over real
// HTTP against the real database and the fake Meta: start, consent, callback, finish, disconnect, and
// every refusal on the way.
import assert from "node:assert/strict";
import { createOAuthStates } from "../_shared/oauth/state.ts";
import { primaryAppSecret } from "../_shared/config.ts";
import {
  auditOf,
  callback,
  finish,
  link,
  linkOf,
  newDoctor,
  stackTest,
  startConnect,
  withStack,
} from "./_support.ts";

const igCalls = (calls: Record<string, number>) =>
  Object.fromEntries(Object.entries(calls).filter(([step, n]) => step.startsWith("ig_") && n > 0));

Deno.test("instagram login path", stackTest, async (t) => {
  await withStack({}, async (stack, sql) => {
    const meta = stack.meta;
    const ig = meta.instagram;
    const connectUrl = stack.functionUrl("instagram-connect");
    const igFlow = async (token: string, account: string, declined: string[] = []) => {
      const { url } = await startConnect(stack, token, "?via=instagram");
      const redirect = await ig.approve(url, account, declined);
      return { url, redirect, result: await callback(redirect) };
    };
    const igLink = async (token: string, account: string) => {
      const flow = await igFlow(token, account);
      assert.equal(flow.result.status, 200, JSON.stringify(flow.result.body));
      return await finish(stack, token, { pending: flow.result.body.pending });
    };
    const start = async (token: string, query: string, body?: unknown) =>
      await fetch(`${connectUrl}${query}`, {
        method: body ? "POST" : "GET",
        headers: {
          authorization: `Bearer ${token}`,
          accept: "application/json",
          "content-type": "application/json",
        },
        body: body ? JSON.stringify(body) : undefined,
      });

    await t.step(
      "end to end: the account id is /me's user_id digit for digit, subscribed with the Instagram fields",
      async () => {
        const doctor = await newDoctor(stack, sql);
        const account = ig.addAccount(`e2e_${crypto.randomUUID().slice(0, 8)}`);
        assert.ok(BigInt(account.userId) > 2n ** 53n, "the fake's id is beyond JS numbers");
        const { url } = await startConnect(stack, doctor.token, "?via=instagram");
        const dialog = new URL(url);
        assert.ok(dialog.pathname.endsWith("/oauth/authorize"), url);
        assert.equal(dialog.searchParams.get("code_challenge"), null, "no PKCE on the Instagram path");
        const redirect = await ig.approve(url, account.name);
        const pending = await callback(redirect);
        assert.equal(pending.status, 200, JSON.stringify(pending.body));
        const finished = await finish(stack, doctor.token, { pending: pending.body.pending });
        assert.equal(finished.status, 200, JSON.stringify(finished.body));
        assert.equal(finished.body.link.via, "instagram");
        assert.equal(finished.body.link.instagram_business_account_id, account.userId);
        assert.equal(finished.body.link.instagram_page_id, null);

        const row = await linkOf(sql, doctor.id);
        assert.equal(row.instagram_business_account_id, account.userId);
        assert.equal(row.instagram_user_id, account.id);
        assert.equal(row.token_kind, "instagram_user");
        assert.equal(row.instagram_page_id, null);
        const days = (row.token_expires_at.getTime() - Date.now()) / 86_400_000;
        assert.ok(days > 59 && days <= 60.01, `token lives ~60 days (${days})`);
        // INSTAGRAM_LOGIN_WEBHOOK_FIELDS' default (config.ts), which the test stack leaves alone.
        const fields = (stack.env.INSTAGRAM_LOGIN_WEBHOOK_FIELDS ??
          "messages,messaging_seen,message_reactions,messaging_postbacks").split(",");
        assert.deepEqual([...ig.account(account.name).subscription ?? []].sort(), [...fields].sort());
      },
    );

    await t.step("unknown via and page_id with instagram: 400 invalid_request", async () => {
      const doctor = await newDoctor(stack, sql);
      const unknown = await start(doctor.token, "?via=whatsapp");
      assert.equal(unknown.status, 400);
      assert.equal((await unknown.json()).error.code, "invalid_request");
      const withPage = await start(doctor.token, "", { via: "instagram", page_id: "123456" });
      assert.equal(withPage.status, 400);
      assert.equal((await withPage.json()).error.code, "invalid_request");
    });

    await t.step("forwarded URL: another doctor's finish is 403 session_mismatch", async () => {
      const [a, b] = [await newDoctor(stack, sql), await newDoctor(stack, sql)];
      const account = ig.addAccount(`fwd_${crypto.randomUUID().slice(0, 8)}`);
      const flow = await igFlow(a.token, account.name);
      const refused = await finish(stack, b.token, { pending: flow.result.body.pending });
      assert.equal(refused.status, 403);
      assert.equal(refused.body.error.code, "session_mismatch");
      assert.equal(await linkOf(sql, b.id), undefined);
    });

    await t.step("state reuse refused before Meta; duplicate callbacks in parallel: one wins", async () => {
      const doctor = await newDoctor(stack, sql);
      const account = ig.addAccount(`reuse_${crypto.randomUUID().slice(0, 8)}`);
      const flow = await igFlow(doctor.token, account.name);
      assert.equal(flow.result.status, 200);
      const before = igCalls(meta.calls);
      const again = await callback(flow.redirect);
      assert.notEqual(again.status, 200);
      assert.deepEqual(igCalls(meta.calls), before, "no Meta call for a used state");

      const { url } = await startConnect(stack, doctor.token, "?via=instagram");
      const redirect = await ig.approve(url, account.name);
      const both = await Promise.all([callback(redirect), callback(redirect)]);
      assert.deepEqual(both.map((r) => r.status === 200).sort(), [false, true]);
    });

    await t.step("a facebook state on the instagram flow and vice versa are refused", async () => {
      const doctor = await newDoctor(stack, sql);
      const states = await createOAuthStates(primaryAppSecret({
        meta: { facebook: { appId: "", appSecret: stack.env.INSTAGRAM_APP_SECRET } },
        instagramLogin: undefined,
      } as never));
      // An Instagram code with a Facebook state: the callback runs the Facebook flow, Meta refuses the code.
      const account = ig.addAccount(`cross_${crypto.randomUUID().slice(0, 8)}`);
      const igRedirect = new URL(
        await ig.approve((await startConnect(stack, doctor.token, "?via=instagram")).url, account.name),
      );
      const fbState = await states.issue({ doctorId: doctor.id, ttlSeconds: 600, via: "facebook" });
      await sql`select public.create_oauth_state(${doctor.id}, ${fbState.nonceHash}, ${fbState.expiresAt})`
        .catch(() => {});
      igRedirect.searchParams.set("state", fbState.state);
      const before = igCalls(meta.calls);
      const refused = await callback(igRedirect.toString());
      assert.notEqual(refused.status, 200, JSON.stringify(refused.body));
      assert.deepEqual(igCalls(meta.calls), before, "the Instagram code never reached Instagram");
      // A Facebook code with an Instagram state: the Instagram flow, Instagram refuses the code.
      const { userId } = meta.newUser(1);
      const fbRedirect = new URL(
        await meta.approve((await startConnect(stack, doctor.token, "?via=facebook")).url, userId),
      );
      const igState = await states.issue({ doctorId: doctor.id, ttlSeconds: 600, via: "instagram" });
      await sql`select public.create_oauth_state(${doctor.id}, ${igState.nonceHash}, ${igState.expiresAt})`
        .catch(() => {});
      fbRedirect.searchParams.set("state", igState.state);
      const fbBefore = meta.calls.code_exchange;
      const refusedToo = await callback(fbRedirect.toString());
      assert.notEqual(refusedToo.status, 200, JSON.stringify(refusedToo.body));
      assert.equal(meta.calls.code_exchange, fbBefore, "the Facebook code never reached Facebook");
    });

    await t.step("cancel and declined permission", async () => {
      const doctor = await newDoctor(stack, sql);
      const { url } = await startConnect(stack, doctor.token, "?via=instagram");
      const cancelled = await callback(await ig.cancel(url));
      assert.notEqual(cancelled.status, 200);
      const account = ig.addAccount(`decl_${crypto.randomUUID().slice(0, 8)}`);
      const declined = await igFlow(doctor.token, account.name, ["instagram_business_manage_messages"]);
      assert.equal(declined.result.status, 422, JSON.stringify(declined.result.body));
      assert.equal(declined.result.body.error.code, "permissions_missing");
      assert.match(declined.result.body.error.message, /instagram_business_manage_messages/);
      assert.equal(await linkOf(sql, doctor.id), undefined);
    });

    await t.step("cross-path 409 both ways", async () => {
      const [a, b] = [await newDoctor(stack, sql), await newDoctor(stack, sql)];
      const { userId, pages } = meta.newUser(1);
      const viaPage = await link(stack, a.token, userId);
      assert.equal(viaPage.finished.status, 200, JSON.stringify(viaPage.finished.body));
      const account = ig.addAccount(`x409_${crypto.randomUUID().slice(0, 8)}`);
      account.userId = pages[0].instagram!.id;
      const taken = await igLink(b.token, account.name);
      assert.equal(taken.status, 409, JSON.stringify(taken.body));
      assert.equal(taken.body.error.code, "account_already_linked");

      // The reverse: C holds account Y via Instagram; D's Page with account Y is refused.
      const [c2, d] = [await newDoctor(stack, sql), await newDoctor(stack, sql)];
      const other = meta.newUser(1);
      const y = ig.addAccount(`y409_${crypto.randomUUID().slice(0, 8)}`);
      y.userId = other.pages[0].instagram!.id;
      assert.equal((await igLink(c2.token, y.name)).status, 200);
      const reverse = await link(stack, d.token, other.userId);
      assert.ok(
        reverse.finished.status === 409 && reverse.finished.body.error?.code === "page_already_linked" ||
          reverse.finished.body.choose?.[0]?.taken,
        JSON.stringify(reverse.finished.body),
      );
    });

    await t.step("switching path both ways keeps one row and one subscription", async () => {
      const doctor = await newDoctor(stack, sql);
      const { userId, pages } = meta.newUser(1);
      assert.equal((await link(stack, doctor.token, userId)).finished.status, 200);
      assert.ok(meta.subscriptions.has(pages[0].id));
      const account = ig.addAccount(`sw_${crypto.randomUUID().slice(0, 8)}`);
      assert.equal((await igLink(doctor.token, account.name)).status, 200);
      assert.equal(
        (await sql`select count(*)::int as n from public.doctor_instagram where doctor_id = ${doctor.id}`)[0]
          .n,
        1,
      );
      assert.equal((await linkOf(sql, doctor.id)).token_kind, "instagram_user");
      assert.ok(!meta.subscriptions.has(pages[0].id), "the Page's subscription was removed");
      assert.ok(ig.account(account.name).subscription, "the Instagram subscription is present");

      const back = await link(stack, doctor.token, userId);
      assert.equal(back.finished.status, 200, JSON.stringify(back.finished.body));
      assert.equal((await linkOf(sql, doctor.id)).token_kind, "page");
      assert.equal(
        ig.account(account.name).subscription,
        undefined,
        "the Instagram subscription was removed",
      );
      assert.ok(meta.subscriptions.has(pages[0].id), "the Page is subscribed again");
    });

    await t.step(
      "disconnect of an instagram link: unsubscribed, row gone, revoke skipped, audited",
      async () => {
        const doctor = await newDoctor(stack, sql);
        const account = ig.addAccount(`dc_${crypto.randomUUID().slice(0, 8)}`);
        assert.equal((await igLink(doctor.token, account.name)).status, 200);
        const response = await fetch(connectUrl, {
          method: "DELETE",
          headers: { authorization: `Bearer ${doctor.token}` },
        });
        const body = await response.json();
        assert.equal(response.status, 200, JSON.stringify(body));
        assert.deepEqual(body.meta, {
          unsubscribed: true,
          revoked: "skipped",
          revoke_skipped_reason: "no_revoke_for_instagram_login",
        });
        assert.equal(ig.account(account.name).subscription, undefined);
        assert.equal(await linkOf(sql, doctor.id), undefined);
        const audit = await auditOf(sql, doctor.id);
        assert.ok(
          audit.some((entry) => entry.action === "instagram.disconnected"),
          JSON.stringify(audit.map((e) => e.action)),
        );
      },
    );

    await t.step("no token, code or secret in any log line", () => {
      const output = stack.functions["instagram-connect"].output() +
        stack.functions["instagram-callback"].output();
      const secrets = [...ig.tokens.values()].flat();
      assert.ok(secrets.length > 5, `collected ${secrets.length} tokens`);
      for (const s of [...secrets, stack.env.INSTAGRAM_LOGIN_APP_SECRET!]) {
        assert.ok(!output.includes(s), `a secret leaked into the logs: ${s.slice(0, 6)}...`);
      }
      assert.match(output, /"via":"instagram"/);
    });
  });
});

// Captures every line both functions print over a run that touches each path (success, choice,
// replay, refusal of another session, conflict, Meta refusals, Meta unreachable, disconnect with
// Meta failing, deauthorize, data deletion and its replay) and fails if any secret appears in it: app
// secret, keys, session tokens, codes, states, PKCE verifiers, Meta's tokens (user, Page, app),
// pending tokens and their Page tokens (plain or encrypted), signed_requests, confirmation codes.
import assert from "node:assert/strict";
import { createOAuthStates } from "../_shared/oauth/state.ts";
import {
  callback,
  finish,
  fullFlow,
  link,
  newDoctor,
  pendingOf,
  post,
  signedRequest,
  stackTest,
  withStack,
} from "./_support.ts";

Deno.test("no secret, token, code, state, verifier or pending token in any log line", stackTest, async () => {
  await withStack(
    { env: { INSTAGRAM_META_TIMEOUT_MS: "300", INSTAGRAM_CALLBACK_DEADLINE_MS: "3000" } },
    async (stack, sql) => {
      const meta = stack.meta;
      const states = await createOAuthStates(stack.env.INSTAGRAM_APP_SECRET);
      const secrets = new Set<string>([
        stack.env.INSTAGRAM_APP_SECRET,
        stack.env.INSTAGRAM_TOKEN_ENCRYPTION_KEY,
      ]);
      const remember = async (flow: { redirect: string; result: { body: any } }) => {
        const url = new URL(flow.redirect);
        for (const name of ["code", "state"]) {
          if (url.searchParams.get(name)) secrets.add(url.searchParams.get(name)!);
        }
        secrets.add((await states.verify(url.searchParams.get("state")!)).codeVerifier);
        if (flow.result.body.pending) secrets.add(flow.result.body.pending);
      };

      const holder = await newDoctor(stack, sql);
      const other = await newDoctor(stack, sql);
      secrets.add(holder.token).add(other.token);
      const { userId, pages } = meta.newUser(2);

      const ok = await fullFlow(stack, holder.token, userId);
      await remember(ok);
      assert.equal((await finish(stack, holder.token, { pending: ok.result.body.pending })).status, 200);
      assert.equal(
        (await finish(stack, holder.token, { pending: ok.result.body.pending, page_id: pages[0].id })).status,
        200,
      );
      assert.equal((await callback(ok.redirect)).status, 400);

      const foreign = await fullFlow(stack, holder.token, meta.newUser(1).userId);
      await remember(foreign);
      assert.equal((await finish(stack, other.token, { pending: foreign.result.body.pending })).status, 403);

      const conflict = await fullFlow(stack, other.token, meta.addUser(`leak-${other.id}`, [pages[0]]));
      await remember(conflict);
      for (const pending of await pendingOf(sql, other.id)) {
        for (const page of pending.pages) secrets.add(page.access_token);
      }
      // A taken Page chosen anyway (the picker offers it as taken): the 409 path's log lines too.
      const chosen = { pending: conflict.result.body.pending, page_id: pages[0].id };
      assert.equal((await finish(stack, other.token, chosen)).status, 409);

      meta.inject("list_pages", { status: 400, error: { code: 190, message: "Invalid OAuth access token" } });
      const refused = await fullFlow(stack, other.token, meta.newUser(1).userId);
      assert.equal(refused.result.status, 400);
      await remember(refused);

      // Disconnect with Meta failing (the unsubscribe errors are logged), then Meta's callbacks.
      const leaving = await newDoctor(stack, sql);
      secrets.add(leaving.token);
      const leaver = meta.newUser(1);
      assert.equal((await link(stack, leaving.token, leaver.userId)).finished.status, 200);
      meta.inject("unsubscribe", { status: 400, error: { code: 190 } });
      const disconnected = await fetch(stack.functionUrl("instagram-connect"), {
        method: "DELETE",
        headers: { authorization: `Bearer ${leaving.token}` },
      });
      assert.deepEqual((await disconnected.json()).meta, { unsubscribed: false, revoked: true });

      const issuedAt = Math.floor(Date.now() / 1000);
      for (const [route, metaUser] of [["deauthorize", userId], ["data-deletion", meta.newUser(1).userId]]) {
        const value = await signedRequest(stack.env.INSTAGRAM_APP_SECRET, {
          algorithm: "HMAC-SHA256",
          issued_at: issuedAt,
          user_id: meta.appScopedId(metaUser),
        });
        secrets.add(value).add(value.split(".")[0]).add(value.split(".")[1]);
        for (let i = 0; i < 2; i++) {
          const answer = await post(stack, route, new URLSearchParams({ signed_request: value }));
          assert.equal(answer.status, 200);
          const body = await answer.json();
          if (body.confirmation_code) secrets.add(body.confirmation_code);
        }
        const forged = await post(stack, route, new URLSearchParams({ signed_request: `${value}x` }));
        assert.equal(forged.status, 400);
      }

      let output = stack.functions["instagram-connect"].output() +
        stack.functions["instagram-callback"].output();

      // Meta unreachable: Deno's fetch error message holds the full URL, client_secret and code included.
      const dead = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const deadUrl = `http://127.0.0.1:${(dead.addr as Deno.NetAddr).port}`;
      dead.close();
      await stack.restart("instagram-callback", { INSTAGRAM_GRAPH_BASE_URL: deadUrl });
      const unreachable = await fullFlow(stack, other.token, meta.newUser(1).userId);
      assert.equal(unreachable.result.status, 502);
      await remember(unreachable);
      output += stack.functions["instagram-callback"].output();

      for (const secret of meta.secrets) secrets.add(secret);
      assert.ok(secrets.size > 40, `collected ${secrets.size} secrets to look for`);
      assert.match(output, /"event":"page_unsubscribe_failed"/, "the failed unsubscribe was logged");
      assert.match(output, /"event":"meta_deauthorized"/);
      assert.match(output, /"event":"meta_data_deletion_requested"/);
      assert.match(output, /"reason":"bad_signature"/, "why a signed_request was refused is logged");
      assert.match(output, /"event":"meta_call_failed"/, "the failures were logged");
      assert.match(output, /"event":"link_refused"/, "the refused session was logged");
      assert.match(output, /client_secret=\[redacted\]/, "the network error was logged, scrubbed");
      assert.match(output, /code_verifier=\[redacted\]/, "including the PKCE verifier");
      for (const secret of secrets) {
        assert.ok(!output.includes(secret), `a secret leaked into the logs: ${secret.slice(0, 6)}...`);
      }
      for (const line of output.split("\n").filter((line) => line.startsWith("{"))) {
        const entry = JSON.parse(line);
        assert.ok(entry.fn && entry.correlation_id && entry.event, `structured line: ${line.slice(0, 80)}`);
      }
    },
  );
});

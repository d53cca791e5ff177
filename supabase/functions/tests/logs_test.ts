// Captures every line both functions print over a run that touches each path (success, replay,
// conflict, Meta refusals, Meta unreachable) and fails if any secret appears in it.
import assert from "node:assert/strict";
import { callback, fullFlow, newDoctor, stackTest, withStack } from "./_support.ts";

Deno.test("no secret, token, code or state value in any log line", stackTest, async () => {
  await withStack(
    { env: { INSTAGRAM_META_TIMEOUT_MS: "300", INSTAGRAM_CALLBACK_DEADLINE_MS: "3000" } },
    async (stack, sql) => {
      const meta = stack.meta;
      const secrets = new Set<string>([
        stack.env.INSTAGRAM_APP_SECRET,
        stack.env.INSTAGRAM_TOKEN_ENCRYPTION_KEY,
      ]);
      const remember = (redirect: string) => {
        const url = new URL(redirect);
        for (const name of ["code", "state"]) {
          if (url.searchParams.get(name)) secrets.add(url.searchParams.get(name)!);
        }
      };

      const holder = await newDoctor(stack, sql);
      const other = await newDoctor(stack, sql);
      secrets.add(holder.token).add(other.token);
      const { userId, pages } = meta.newUser(1);

      const ok = await fullFlow(stack, holder.token, userId);
      assert.equal(ok.result.status, 200);
      remember(ok.redirect);
      assert.equal((await callback(ok.redirect)).status, 400);

      const conflict = await fullFlow(stack, other.token, meta.addUser(`leak-${other.id}`, pages));
      assert.equal(conflict.result.status, 409);
      remember(conflict.redirect);

      meta.inject("list_pages", { status: 400, error: { code: 190, message: "Invalid OAuth access token" } });
      const refused = await fullFlow(stack, other.token, meta.newUser(1).userId);
      assert.equal(refused.result.status, 502);
      remember(refused.redirect);

      let output = stack.functions["instagram-connect"].output() +
        stack.functions["instagram-callback"].output();

      // Meta unreachable: Deno's fetch error message holds the full URL, client_secret and code included.
      const dead = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const deadUrl = `http://127.0.0.1:${(dead.addr as Deno.NetAddr).port}`;
      dead.close();
      await stack.restart("instagram-callback", { INSTAGRAM_GRAPH_BASE_URL: deadUrl });
      const unreachable = await fullFlow(stack, other.token, meta.newUser(1).userId);
      assert.equal(unreachable.result.status, 502);
      remember(unreachable.redirect);
      output += stack.functions["instagram-callback"].output();

      for (const secret of meta.secrets) secrets.add(secret);
      assert.ok(secrets.size > 15, `collected ${secrets.size} secrets to look for`);
      assert.match(output, /"event":"meta_call_failed"/, "the failures were logged");
      assert.match(output, /client_secret=\[redacted\]/, "the network error was logged, scrubbed");
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

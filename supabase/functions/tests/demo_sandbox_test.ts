// The Meta sandbox's health controls over HTTP (/demo/sandbox/<control>, demo_sandbox_health.ts), as the
// demo dashboard calls them: each breaks the caller's own link in one way, and the Graph client then sees
// it as maintenance would. Dr. Other's seeded link is the one broken: the sandbox knows its token. Then
// "Run maintenance now" (/demo/sandbox/run-maintenance, demo_sandbox_maintenance.ts): a doctor's session
// makes the dev server run the real instagram-maintenance with the secret key it holds, and nothing else
// does.
import assert from "node:assert/strict";
import postgres from "postgres";
import {
  DEMO_DOCTORS,
  DEMO_PAGES,
  SANDBOX_INSTAGRAM_ACCOUNT,
  SEEDED_PAGE_TOKEN,
  seedInstagramLink,
  startDevStack,
} from "../../../scripts/lib/dev_stack.ts";
import { createJwtIssuer } from "../../../scripts/lib/jwt_issuer.ts";
import { LOCAL_PUBLISHABLE_KEY, LOCAL_SECRET_KEY, tokenKeyringOf } from "../../../scripts/lib/local_stack.ts";
import { loadConfig } from "../_shared/config.ts";
import type { Logger } from "../_shared/log.ts";
import { createMetaGraph } from "../_shared/meta/graph.ts";
import { assessPageToken } from "../_shared/meta/link_health.ts";
import { databaseUrl, linkOf, stackTest } from "./_support.ts";

/** Whether instagram-webhook checks the Instagram app's secret yet (branch ig-hooks). */
const INSTAGRAM_RECEIVER_BUILT = await (async () => {
  for await (const entry of Deno.readDir(new URL("../instagram-webhook/", import.meta.url))) {
    const url = new URL(`../instagram-webhook/${entry.name}`, import.meta.url);
    if (entry.name.endsWith(".ts") && (await Deno.readTextFile(url)).includes("instagramAppSecret")) {
      return true;
    }
  }
  return false;
})();

const quiet: Logger = { info() {}, warn() {}, error() {}, child: () => quiet };

Deno.test("demo sandbox: the health controls break the caller's link as Meta can", stackTest, async (t) => {
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  const dev = await startDevStack({ databaseUrl });
  try {
    const usage: number[] = [];
    const config = loadConfig(["meta"], dev.stack.env);
    const graph = createMetaGraph(config, quiet, { onUsage: (percent) => usage.push(percent) });
    const page = DEMO_PAGES.lakeside;
    const expected = () => ({
      appId: config.meta.facebook!.appId,
      pageId: page.id,
      instagramAccountId: page.instagram.id,
      now: new Date(),
    });
    const check = async () =>
      assessPageToken(await graph.debugToken(SEEDED_PAGE_TOKEN, deadline()), expected());
    const other = `Bearer ${await dev.stack.jwt.sign({ sub: DEMO_DOCTORS.other.id })}`;
    const control = async (action: string, body: unknown, authorization = other) => {
      const response = await fetch(`${dev.url}/demo/sandbox/${action}`, {
        method: "POST",
        headers: { authorization, "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      return { status: response.status, body: await response.json() };
    };

    await t.step("the seeded link starts healthy and subscribed", async () => {
      assert.equal((await check()).reason, undefined);
      const subscriptions = await graph.pageSubscriptions(page.id, SEEDED_PAGE_TOKEN, deadline());
      assert.deepEqual(subscriptions.map((s) => s.appId), [config.meta.facebook!.appId]);
    });

    await t.step("only a signed-in doctor with a link, with a sound body", async () => {
      const anonymous = await fetch(`${dev.url}/demo/sandbox/kill-token`, { method: "POST", body: "{}" });
      assert.equal(anonymous.status, 401);
      await anonymous.body?.cancel();
      const demo = `Bearer ${await dev.stack.jwt.sign({ sub: DEMO_DOCTORS.demo.id })}`;
      assert.equal((await control("kill-token", {}, demo)).body.error.code, "not_connected");
      assert.equal((await control("kill-token", { subcode: 123 })).status, 400);
      assert.equal((await control("data-access", { days: "soon" })).status, 400);
      assert.equal((await control("remove-permission", { permission: "DROP TABLE" })).status, 400);
      assert.equal((await control("usage", { percent: -1 })).status, 400);
      const get = await fetch(`${dev.url}/demo/sandbox/usage`, { headers: { authorization: other } });
      assert.equal(get.status, 405);
      await get.body?.cancel();
      assert.equal((await check()).reason, undefined, "nothing was changed by a refused control");
    });

    await t.step("usage: the figure comes back in the usage headers", async () => {
      assert.deepEqual((await control("usage", { percent: 80 })).body, {
        sandbox: true,
        action: "usage",
        percent: 80,
      });
      await graph.debugToken(SEEDED_PAGE_TOKEN, deadline());
      await graph.pageSubscriptions(page.id, SEEDED_PAGE_TOKEN, deadline());
      assert.deepEqual(usage.slice(-2), [80, 80]);
      await control("usage", { percent: null });
      const before = usage.length;
      await graph.debugToken(SEEDED_PAGE_TOKEN, deadline());
      assert.equal(usage.length, before, "no headers once cleared");
    });

    await t.step("data-access: an expiry ahead is reported, one past ends the link's access", async () => {
      const ahead = await control("data-access", { days: 7 });
      assert.equal(ahead.status, 200);
      const { reason, reconnectBy } = await check();
      assert.equal(reason, undefined);
      assert.equal(
        Math.floor(reconnectBy!.getTime() / 1000),
        Math.floor(Date.parse(ahead.body.data_access_expires_at) / 1000),
      );
      await control("data-access", { days: -1 });
      assert.equal((await check()).reason, "data_access_expired");
      await control("data-access", { days: 90 });
      assert.equal((await check()).reason, undefined);
    });

    await t.step("remove-permission: for this Page only, then for every Page", async () => {
      const pageOnly = await control("remove-permission", {
        permission: "pages_manage_metadata",
        page_only: true,
      });
      assert.deepEqual(pageOnly.body, {
        sandbox: true,
        action: "remove-permission",
        permission: "pages_manage_metadata",
        page_only: true,
      });
      assert.equal((await check()).reason, "permissions_missing");
      await control("remove-permission", { permission: "instagram_manage_messages" });
      const debug = await graph.debugToken(SEEDED_PAGE_TOKEN, deadline());
      assert.equal(debug.scopes.includes("instagram_manage_messages"), false);
    });

    await t.step("drop-subscription: our app is no longer subscribed to the Page", async () => {
      assert.deepEqual((await control("drop-subscription", {})).body, {
        sandbox: true,
        action: "drop-subscription",
        dropped: true,
      });
      assert.equal(dev.stack.meta.subscriptions.has(page.id), false);
    });

    await t.step("kill-token: the Page's token dies with the subcode asked for", async () => {
      const killed = await control("kill-token", { subcode: 460 });
      assert.deepEqual(killed.body, { sandbox: true, action: "kill-token", subcode: 460, killed: 1 });
      assert.equal((await check()).reason, "password_changed");
    });

    const runMaintenance = async (headers: Record<string, string>) => {
      const response = await fetch(`${dev.url}/demo/sandbox/run-maintenance`, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: "{}",
      });
      return { status: response.status, body: await response.json() };
    };
    const maintenanceRuns = () =>
      dev.stack.functions["instagram-maintenance"].output().match(/"event":"request"/g)?.length ?? 0;

    await t.step("run-maintenance: anything but a doctor's session is 401, and runs nothing", async () => {
      const stranger = await createJwtIssuer();
      const refused: Record<string, Record<string, string>> = {
        "no session": {},
        "a malformed token": { authorization: "Bearer a.b.c" },
        "the publishable key": {
          authorization: `Bearer ${LOCAL_PUBLISHABLE_KEY}`,
          apikey: LOCAL_PUBLISHABLE_KEY,
        },
        // The route is for the browser: even the secret key itself does not stand in for a doctor.
        "the secret key": { authorization: `Bearer ${LOCAL_SECRET_KEY}`, apikey: LOCAL_SECRET_KEY },
        "an anon JWT": { authorization: `Bearer ${await dev.stack.jwt.sign({ role: "anon" })}` },
        "another issuer's JWT": {
          authorization: `Bearer ${await stranger.sign({ sub: DEMO_DOCTORS.demo.id })}`,
        },
        "an expired session": {
          authorization: `Bearer ${await dev.stack.jwt.sign({ sub: DEMO_DOCTORS.demo.id }, {
            expiresIn: -60,
          })}`,
        },
      };
      for (const [what, headers] of Object.entries(refused)) {
        const answer = await runMaintenance(headers);
        assert.equal(answer.status, 401, what);
        assert.equal(answer.body.error.code, "unauthorized", what);
      }
      const get = await fetch(`${dev.url}/demo/sandbox/run-maintenance`, {
        headers: { authorization: other },
      });
      assert.equal(get.status, 405);
      await get.body?.cancel();
      assert.equal(maintenanceRuns(), 0, "the function was never called");
      assert.equal((await linkOf(sql, DEMO_DOCTORS.other.id)).checked_at, null, "nor was any link checked");
    });

    await t.step(
      "run-maintenance: a doctor's session runs instagram-maintenance and gets its summary",
      async () => {
        // Dr. Demo has no link: a run checks every link, as the schedule's does, so any doctor may ask.
        const demo = `Bearer ${await dev.stack.jwt.sign({ sub: DEMO_DOCTORS.demo.id })}`;
        const answer = await runMaintenance({ authorization: demo });
        assert.equal(answer.status, 200, JSON.stringify(answer.body));
        assert.equal(answer.body.sandbox, true);
        assert.equal(answer.body.action, "run-maintenance");
        const summary = answer.body.summary;
        assert.deepEqual(Object.keys(summary).sort(), [
          "checked",
          "deferred",
          "failed",
          "flagged",
          "purged",
          "recovered",
          "reencrypted",
          "refreshed",
          "restored",
          "revoked",
          "unreadable",
        ]);
        assert.ok(summary.checked >= 1 && summary.flagged >= 1, JSON.stringify(summary));
        assert.equal(JSON.stringify(answer.body).includes(LOCAL_SECRET_KEY), false);
        assert.equal(maintenanceRuns(), 1, "one run of the real function");
        // The link the sandbox killed with 460 (the step above) is what that run found.
        const link = await linkOf(sql, DEMO_DOCTORS.other.id);
        assert.equal(link.status, "needs_reconnect");
        assert.equal(link.status_reason, "password_changed");
        assert.ok(link.checked_at);
      },
    );

    await t.step(
      "run-maintenance: the key the function is configured for; its refusal passed back",
      async () => {
        // The function made to accept only a key named "cron", which the dev server does not know yet.
        const cronKey = `sb_secret_${crypto.randomUUID().replaceAll("-", "")}`;
        const keys = JSON.stringify({ default: LOCAL_SECRET_KEY, cron: cronKey });
        await dev.stack.restart("instagram-maintenance", {
          SUPABASE_SECRET_KEYS: keys,
          INSTAGRAM_MAINTENANCE_KEY_NAME: "cron",
        });
        const refused = await runMaintenance({ authorization: other });
        assert.equal(refused.status, 401);
        assert.equal(refused.body.error.code, "secret_key_required");
        // Once the dev server's variables name it too, its calls carry that key.
        Object.assign(dev.stack.env, { SUPABASE_SECRET_KEYS: keys, INSTAGRAM_MAINTENANCE_KEY_NAME: "cron" });
        const accepted = await runMaintenance({ authorization: other });
        assert.equal(accepted.status, 200, JSON.stringify(accepted.body));
        assert.equal(typeof accepted.body.summary.checked, "number");
      },
    );
  } finally {
    await dev.stop();
    await sql`delete from auth.users where id in ${
      sql(Object.values(DEMO_DOCTORS).map((doctor) => doctor.id))
    }`;
    await sql.end();
  }
});

Deno.test(
  "demo sandbox: an Instagram Login link's messages are signed with the Instagram app's secret",
  stackTest,
  async (t) => {
    const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
    const dev = await startDevStack({ databaseUrl });
    try {
      const demo = DEMO_DOCTORS.demo;
      const account = dev.stack.meta.instagram.account(SANDBOX_INSTAGRAM_ACCOUNT);
      await seedInstagramLink(
        sql,
        await tokenKeyringOf(dev.stack.env),
        demo.id,
        account,
        "IGAAseededDemoToken",
      );
      const authorization = `Bearer ${await dev.stack.jwt.sign({ sub: demo.id })}`;
      const control = async (action: string, body: unknown) => {
        const response = await fetch(`${dev.url}/demo/sandbox/${action}`, {
          method: "POST",
          headers: { authorization, "content-type": "application/json" },
          body: JSON.stringify(body),
        });
        return { status: response.status, body: await response.json() };
      };

      await t.step("the dashboard is told both paths are configured", async () => {
        const html = await (await fetch(`${dev.url}/demo/`)).text();
        assert.match(html, /"paths":\{"facebook":true,"instagram":true\}/);
      });

      await t.step({
        name: "a message is stored for the Instagram link: the receiver took it as the Instagram app's",
        // The receiver's per-app secrets come from branch ig-hooks: ignored until they are in this tree.
        ignore: !INSTAGRAM_RECEIVER_BUILT,
        fn: async () => {
          const sent = await control("message", { text: "Hello from a patient" });
          assert.equal(sent.status, 200, JSON.stringify(sent.body));
          assert.equal(sent.body.webhook.result.stored, 1, JSON.stringify(sent.body));
          const rows = await sql`select account_id from public.instagram_events where doctor_id = ${demo.id}`;
          assert.deepEqual(rows.map((row) => row.account_id), [account.userId]);
        },
      });

      await t.step("the Page controls refuse a link without a Page, and change nothing", async () => {
        const refused = await control("kill-token", { subcode: 460 });
        assert.equal(refused.status, 400);
        assert.equal(refused.body.error.code, "invalid_request");
        assert.match(refused.body.error.message, /made with Instagram Login/);
        assert.equal((await linkOf(sql, demo.id)).status, "active");
      });
    } finally {
      await dev.stop();
      await sql`delete from auth.users where id in ${
        sql(Object.values(DEMO_DOCTORS).map((doctor) => doctor.id))
      }`;
      await sql.end();
    }
  },
);

function deadline() {
  return AbortSignal.timeout(5_000);
}

// The Graph client's link health calls (debugToken, pageSubscriptions, the usage headers) against the fake
// Meta, and the fake's own refusals, with no stack and no database: a token is got the way the callback
// gets one (dialog, code exchange, long-lived exchange, the user's Pages).
import assert from "node:assert/strict";
import { loadConfig } from "../_shared/config.ts";
import { AppError } from "../_shared/errors.ts";
import { hmacSha256Hex } from "../_shared/crypto/digest.ts";
import type { Logger } from "../_shared/log.ts";
import { createMetaGraph } from "../_shared/meta/graph.ts";
import {
  assessPageToken,
  type LinkStatusReason,
  reasonFromGraphError,
  REQUIRED_LINK_SCOPES,
} from "../_shared/meta/link_health.ts";
import { FakeMeta } from "../../../scripts/lib/fake_meta.ts";

const APP_ID = "1234567890123";
const APP_SECRET = "0123456789abcdef0123456789abcdef";
const VERSION = "v27.0";
const SCOPES = ["pages_show_list", ...REQUIRED_LINK_SCOPES, "business_management"];
const FIELDS = ["messages", "messaging_postbacks"];

/** A logger that keeps its lines, so a test can look for leaks and the suite's output stays quiet. */
function memoryLogger(lines: string[] = []): Logger {
  const write = (level: string) => (event: string, fields = {}) =>
    void lines.push(JSON.stringify({ level, event, ...fields }));
  return {
    info: write("info"),
    warn: write("warn"),
    error: write("error"),
    child: () => memoryLogger(lines),
  };
}

async function withFake(
  body: (
    fake: FakeMeta,
    setup: { usage: number[]; lines: string[]; env: Record<string, string> },
  ) => Promise<void>,
) {
  const fake = new FakeMeta({ appId: APP_ID, appSecret: APP_SECRET, graphVersion: VERSION });
  const env = {
    INSTAGRAM_APP_ID: APP_ID,
    INSTAGRAM_APP_SECRET: APP_SECRET,
    INSTAGRAM_GRAPH_VERSION: VERSION,
    INSTAGRAM_GRAPH_BASE_URL: fake.url,
    INSTAGRAM_DIALOG_BASE_URL: fake.url,
    INSTAGRAM_REDIRECT_URI: "http://127.0.0.1:9/functions/v1/instagram-callback",
    INSTAGRAM_SCOPES: SCOPES.join(","),
    INSTAGRAM_PKCE: "off",
    INSTAGRAM_META_MAX_RETRIES: "0",
  };
  try {
    await body(fake, { usage: [], lines: [], env });
  } finally {
    await fake.close();
  }
}

const deadline = () => AbortSignal.timeout(5_000);

/** The graph maintenance would use: only the `meta` part of the configuration. */
function maintenanceGraph(env: Record<string, string>, usage: number[], lines: string[]) {
  return createMetaGraph(loadConfig(["meta"], env), memoryLogger(lines), {
    onUsage: (percent) => usage.push(percent),
  });
}

/** A user who allowed every permission, and the Page tokens the callback would have got. */
async function linkedUser(fake: FakeMeta, env: Record<string, string>, pageCount = 1) {
  const { userId, appScopedId } = fake.newUser(pageCount);
  const dialog = new URL(`${fake.url}/${VERSION}/dialog/oauth`);
  dialog.search = new URLSearchParams({
    client_id: APP_ID,
    redirect_uri: env.INSTAGRAM_REDIRECT_URI,
    state: "state",
    response_type: "code",
    scope: SCOPES.join(","),
  }).toString();
  const code = new URL(await fake.approve(dialog.toString(), userId)).searchParams.get("code")!;
  const login = createMetaGraph(loadConfig(["meta", "login"], env), memoryLogger());
  const short = await login.exchangeCode(code, "", deadline());
  const user = await login.readUser(await login.exchangeForLongLivedToken(short, deadline()), deadline());
  const pages = user.pages.map((page) => ({
    id: page.id,
    token: page.access_token!,
    instagramId: page.instagram_business_account!.id,
  }));
  return { userId, appScopedId, pages, page: pages[0] };
}

function expectedFor(page: { id: string; instagramId: string }) {
  return { appId: APP_ID, pageId: page.id, instagramAccountId: page.instagramId, now: new Date() };
}

/** The AppError a call rejects with. */
async function failure(promise: Promise<unknown>): Promise<AppError> {
  const error = await promise.then(() => undefined, (error) => error);
  assert.ok(error instanceof AppError, `expected an AppError, got ${error}`);
  return error;
}

Deno.test("debugToken: a Page token just linked is valid for its Page, with Meta's dates", async () => {
  await withFake(async (fake, { usage, lines, env }) => {
    const { appScopedId, page } = await linkedUser(fake, env);
    const graph = maintenanceGraph(env, usage, lines);
    const debug = await graph.debugToken(page.token, deadline());
    assert.equal(debug.isValid, true);
    assert.equal(debug.otherApp, false);
    assert.equal(debug.type, "PAGE");
    assert.equal(debug.appId, APP_ID);
    assert.equal(debug.profileId, page.id);
    assert.equal(debug.userId, appScopedId);
    assert.equal(debug.expiresAt, undefined, "got with a long-lived user token: never expires");
    const in90Days = Date.now() + 90 * 86_400_000;
    assert.ok(Math.abs(debug.dataAccessExpiresAt!.getTime() - in90Days) < 5_000, "data access for 90 days");
    for (const scope of REQUIRED_LINK_SCOPES) assert.ok(debug.scopes.includes(scope), scope);
    assert.deepEqual(debug.granularScopes.find((g) => g.scope === "pages_manage_metadata")?.targetIds, [
      page.id,
    ]);
    assert.deepEqual(debug.granularScopes.find((g) => g.scope === "instagram_basic")?.targetIds, [
      page.instagramId,
    ]);
    assert.deepEqual(assessPageToken(debug, expectedFor(page)), {
      reason: undefined,
      reconnectBy: debug.dataAccessExpiresAt,
      tokenExpiresAt: undefined,
    });
    assert.equal(fake.calls.debug_token, 1);
  });
});

Deno.test("debugToken and a Graph call on a token killed with each 190 subcode", async () => {
  await withFake(async (fake, { usage, lines, env }) => {
    const graph = maintenanceGraph(env, usage, lines);
    const cases: [number | undefined, LinkStatusReason][] = [
      [undefined, "token_invalid"],
      [458, "app_removed"],
      [459, "account_checkpointed"],
      [460, "password_changed"],
      [463, "token_expired"],
      [464, "account_checkpointed"],
      [467, "token_invalid"],
      [492, "page_role_lost"],
    ];
    for (const [subcode, reason] of cases) {
      const { page } = await linkedUser(fake, env);
      assert.equal(fake.killPageTokens(page.id, subcode), 1);
      const debug = await graph.debugToken(page.token, deadline());
      assert.equal(debug.isValid, false, `${subcode}`);
      assert.equal(debug.error?.code, 190);
      assert.equal(debug.error?.subcode, subcode);
      assert.match(debug.error?.message ?? "", /access token/i);
      assert.equal(debug.profileId, page.id, "a dead token still says what it was");
      assert.equal(
        assessPageToken(debug, expectedFor(page)).reason,
        reason,
        `debug_token, subcode ${subcode}`,
      );
      // Every Graph call with it fails with the same 190.
      const error = await failure(graph.pageSubscriptions(page.id, page.token, deadline()));
      assert.equal(error.code, "meta_token_invalid");
      assert.equal(reasonFromGraphError(error), reason, `a Graph call, subcode ${subcode}`);
      const logged = lines.join("\n");
      assert.match(logged, /"event":"meta_call_failed"/);
      assert.ok(!logged.includes(page.token), "the token is never logged");
    }
  });
});

Deno.test("a Page token issued after a kill (the doctor reconnecting) works", async () => {
  await withFake(async (fake, { usage, lines, env }) => {
    const first = await linkedUser(fake, env);
    fake.killPageTokens(first.page.id, 460);
    const login = createMetaGraph(loadConfig(["meta", "login"], env), memoryLogger());
    const dialog = new URL(`${fake.url}/${VERSION}/dialog/oauth`);
    dialog.search = new URLSearchParams({
      client_id: APP_ID,
      redirect_uri: env.INSTAGRAM_REDIRECT_URI,
      state: "again",
      response_type: "code",
    }).toString();
    const code = new URL(await fake.approve(dialog.toString(), first.userId)).searchParams.get("code")!;
    const long = await login.exchangeForLongLivedToken(
      await login.exchangeCode(code, "", deadline()),
      deadline(),
    );
    const [page] = (await login.readUser(long, deadline())).pages;
    const graph = maintenanceGraph(env, usage, lines);
    assert.equal((await graph.debugToken(first.page.token, deadline())).isValid, false);
    assert.equal((await graph.debugToken(page.access_token!, deadline())).isValid, true);
  });
});

Deno.test("debugToken: data access ended, and a data-access expiry still ahead", async () => {
  await withFake(async (fake, { usage, lines, env }) => {
    const graph = maintenanceGraph(env, usage, lines);
    const soon = await linkedUser(fake, env);
    const at = new Date(Math.floor(Date.now() / 1000) * 1000 + 10 * 86_400_000);
    fake.setDataAccessExpiry(soon.userId, at);
    const ahead = await graph.debugToken(soon.page.token, deadline());
    assert.equal(ahead.isValid, true);
    assert.deepEqual(assessPageToken(ahead, expectedFor(soon.page)), {
      reason: undefined,
      reconnectBy: at,
      tokenExpiresAt: undefined,
    });

    const over = await linkedUser(fake, env);
    fake.setDataAccessExpiry(over.userId, new Date(Date.now() - 60_000));
    const debug = await graph.debugToken(over.page.token, deadline());
    assert.equal(debug.isValid, false);
    assert.equal(debug.error?.subcode, 493);
    assert.ok(debug.dataAccessExpiresAt!.getTime() < Date.now());
    assert.equal(assessPageToken(debug, expectedFor(over.page)).reason, "data_access_expired");
    const error = await failure(graph.pageSubscriptions(over.page.id, over.page.token, deadline()));
    assert.equal(reasonFromGraphError(error), "data_access_expired");
  });
});

Deno.test("debugToken: another app's token is a mismatch, told apart from a token Meta cannot read", async () => {
  await withFake(async (fake, { usage, lines, env }) => {
    const graph = maintenanceGraph(env, usage, lines);
    const { userId, page } = await linkedUser(fake, env);
    const foreign = await graph.debugToken(fake.otherAppPageToken(userId, page.id), deadline());
    assert.deepEqual(foreign, { isValid: false, otherApp: true, scopes: [], granularScopes: [] });
    assert.equal(assessPageToken(foreign, expectedFor(page)).reason, "page_token_mismatch");

    const unreadable = await graph.debugToken("EAAGnotATokenThisFakeIssued", deadline());
    assert.equal(unreadable.isValid, false);
    assert.equal(unreadable.otherApp, false);
    assert.deepEqual(unreadable.error, {
      code: 190,
      message: "Invalid OAuth access token - Cannot parse access token",
    });
    assert.equal(assessPageToken(unreadable, expectedFor(page)).reason, "token_invalid");

    // Another Page's token, linked to this Page by mistake.
    const other = await linkedUser(fake, env);
    const mixedUp = await graph.debugToken(other.page.token, deadline());
    assert.equal(assessPageToken(mixedUp, expectedFor(page)).reason, "page_token_mismatch");
  });
});

Deno.test("debugToken: a permission taken back, for every Page or for this Page only", async () => {
  await withFake(async (fake, { usage, lines, env }) => {
    const graph = maintenanceGraph(env, usage, lines);
    const everywhere = await linkedUser(fake, env);
    fake.removePermission(everywhere.userId, "instagram_manage_messages");
    const debug = await graph.debugToken(everywhere.page.token, deadline());
    assert.equal(debug.isValid, true);
    assert.ok(!debug.scopes.includes("instagram_manage_messages"));
    assert.equal(assessPageToken(debug, expectedFor(everywhere.page)).reason, "permissions_missing");
    assert.deepEqual(fake.permissionsOf(everywhere.userId).declined, ["instagram_manage_messages"]);

    // pages_manage_metadata kept for the user's other Page, taken back for this one.
    const onePage = await linkedUser(fake, env, 2);
    const [page, otherPage] = onePage.pages;
    fake.removePermission(onePage.userId, "pages_manage_metadata", page.id);
    const granular = await graph.debugToken(page.token, deadline());
    assert.ok(granular.scopes.includes("pages_manage_metadata"));
    assert.deepEqual(
      granular.granularScopes.find((g) => g.scope === "pages_manage_metadata")?.targetIds,
      [otherPage.id],
    );
    assert.equal(assessPageToken(granular, expectedFor(page)).reason, "permissions_missing");
    assert.equal(
      assessPageToken(await graph.debugToken(otherPage.token, deadline()), expectedFor(otherPage)).reason,
      undefined,
    );
    // Reading the subscription needs it ("Page Subscribed Apps"): (#200), a missing permission.
    const error = await failure(graph.pageSubscriptions(page.id, page.token, deadline()));
    assert.equal(error.code, "permissions_missing");
    assert.equal(reasonFromGraphError(error), "permissions_missing");
    assert.deepEqual(await graph.pageSubscriptions(otherPage.id, otherPage.token, deadline()), []);
  });
});

Deno.test("pageSubscriptions: ours with its fields, another app's beside it, and ours dropped", async () => {
  await withFake(async (fake, { usage, lines, env }) => {
    const graph = maintenanceGraph(env, usage, lines);
    const { page } = await linkedUser(fake, env);
    assert.deepEqual(
      await graph.pageSubscriptions(page.id, page.token, deadline()),
      [],
      "nothing subscribed yet",
    );
    await graph.subscribePage(page.id, page.token, FIELDS, deadline());
    fake.subscribeOtherApp(page.id, { id: "555000000000001", name: "Other CRM", fields: ["feed"] });
    assert.deepEqual(await graph.pageSubscriptions(page.id, page.token, deadline()), [
      { appId: "555000000000001", fields: ["feed"] },
      { appId: APP_ID, fields: FIELDS },
    ]);
    assert.equal(fake.dropSubscription(page.id), true);
    assert.deepEqual(await graph.pageSubscriptions(page.id, page.token, deadline()), [
      { appId: "555000000000001", fields: ["feed"] },
    ]);
    assert.equal(fake.calls.read_subscriptions, 3);
  });
});

Deno.test("onUsage: the highest figure of every answered call, refusals included; nothing without headers", async () => {
  await withFake(async (fake, { usage, lines, env }) => {
    const graph = maintenanceGraph(env, usage, lines);
    const { page } = await linkedUser(fake, env);
    await graph.debugToken(page.token, deadline());
    await graph.pageSubscriptions(page.id, page.token, deadline());
    assert.deepEqual(usage, [], "no usage headers until figures are set");

    fake.setUsage({ app: 30, business: { call_count: 10, total_cputime: 5, total_time: 80 } });
    await graph.debugToken(page.token, deadline()); // the app token: X-App-Usage
    await graph.pageSubscriptions(page.id, page.token, deadline()); // the Page token: X-Business-Use-Case-Usage
    fake.killPageTokens(page.id, 460);
    await failure(graph.pageSubscriptions(page.id, page.token, deadline()));
    assert.deepEqual(usage, [30, 80, 80]);

    fake.setUsage(77);
    await graph.debugToken(page.token, deadline());
    fake.setUsage();
    await graph.debugToken(page.token, deadline());
    assert.deepEqual(usage, [30, 80, 80, 77]);
  });
});

Deno.test("the fake's refusals: debug_token without the app token, subscribed_apps with another Page's token", async () => {
  await withFake(async (fake, { env }) => {
    const { page } = await linkedUser(fake, env, 2);
    const graphUrl = (path: string, params: Record<string, string>) => {
      const url = new URL(`${fake.url}/${VERSION}${path}`);
      url.search = new URLSearchParams(params).toString();
      return url;
    };
    const proof = (token: string) => hmacSha256Hex(APP_SECRET, token);

    const withoutAppToken: Record<string, string>[] = [
      {},
      { access_token: page.token, appsecret_proof: await proof(page.token) },
    ];
    for (const params of withoutAppToken) {
      const response = await fetch(graphUrl("/debug_token", { input_token: page.token, ...params }));
      assert.equal(response.status, 400);
      const { error } = await response.json();
      assert.equal(error.code, 100);
      assert.equal(
        error.message,
        "(#100) You must provide an app access token, or a user access token that is an owner or developer of the app",
      );
    }
    // The app token with its proof is what Meta wants.
    const appToken = `${APP_ID}|${APP_SECRET}`;
    const answered = await fetch(
      graphUrl("/debug_token", {
        input_token: page.token,
        access_token: appToken,
        appsecret_proof: await proof(appToken),
      }),
    );
    assert.equal(answered.status, 200);
    assert.equal((await answered.json()).data.profile_id, page.id);

    const other = await linkedUser(fake, env);
    const wrongPage = await fetch(
      graphUrl(`/${page.id}/subscribed_apps`, {
        access_token: other.page.token,
        appsecret_proof: await proof(other.page.token),
      }),
    );
    assert.equal(wrongPage.status, 400);
    assert.equal((await wrongPage.json()).error.code, 210);
    const noProof = await fetch(graphUrl(`/${page.id}/subscribed_apps`, { access_token: page.token }));
    assert.equal(noProof.status, 400, "Require App Secret holds for the new endpoints too");
  });
});

Deno.test("the sandbox's own address, which the dev banner prints, says what it is (not a 400)", async () => {
  await withFake(async (fake) => {
    const answer = await fetch(`${fake.url}/`);
    assert.equal(answer.status, 200);
    assert.match(answer.headers.get("content-type") ?? "", /^text\/plain/);
    assert.match(await answer.text(), /^Local Meta sandbox \(not Meta\)/);
  });
});

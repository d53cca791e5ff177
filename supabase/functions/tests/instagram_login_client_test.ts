// The Instagram Login client (_shared/meta/instagram_login.ts) against the fake Meta over real HTTP on
// loopback: every call, the code exchange's user_id digit for digit (a bare integer above 2^53), /me's
// id and user_id told apart, the 24-hour refresh rule, errors in the catalogue's classes, and no token,
// code or secret in any log line.
import assert from "node:assert/strict";
import { loadConfig } from "../_shared/config.ts";
import { AppError } from "../_shared/errors.ts";
import { type Logger, scrub } from "../_shared/log.ts";
import { idsAsStrings } from "../_shared/ids.ts";
import { createInstagramLogin } from "../_shared/meta/instagram_login.ts";
import { FakeMeta } from "../../../scripts/lib/fake_meta.ts";

const IG_APP_ID = "9876543210123";
const IG_APP_SECRET = "fedcba9876543210fedcba9876543210";
const REDIRECT_URI = "http://127.0.0.1:9/functions/v1/instagram-callback";
const SCOPES = ["instagram_business_basic", "instagram_business_manage_messages"];
const HOUR = 3_600_000;

/** As the real logger writes a line (scrubbed JSON), kept for the leak check. */
function memoryLogger(lines: string[]): Logger {
  const write = (level: string) => (event: string, fields: Record<string, unknown> = {}) =>
    void lines.push(JSON.stringify(scrub({ level, event, ...fields })));
  return {
    info: write("info"),
    warn: write("warn"),
    error: write("error"),
    child: () => memoryLogger(lines),
  };
}

function envFor(fake: FakeMeta, extra: Record<string, string> = {}): Record<string, string> {
  return {
    INSTAGRAM_LOGIN_APP_ID: IG_APP_ID,
    INSTAGRAM_LOGIN_APP_SECRET: IG_APP_SECRET,
    INSTAGRAM_LOGIN_REDIRECT_URI: REDIRECT_URI,
    INSTAGRAM_LOGIN_DIALOG_BASE_URL: fake.instagramBaseUrls.dialog,
    INSTAGRAM_LOGIN_API_BASE_URL: fake.instagramBaseUrls.api,
    INSTAGRAM_LOGIN_GRAPH_BASE_URL: fake.instagramBaseUrls.graph,
    INSTAGRAM_GRAPH_VERSION: "v27.0",
    INSTAGRAM_META_TIMEOUT_MS: "2000",
    ...extra,
  };
}

const deadline = () => AbortSignal.timeout(10_000);

async function rejectsWith(promise: Promise<unknown>, code: string, message?: string) {
  await assert.rejects(promise, (error) => error instanceof AppError && error.code === code, message ?? code);
}

Deno.test("Instagram Login client against the fake Meta", async (t) => {
  const fake = new FakeMeta({
    appId: "1234567890123",
    appSecret: "0123456789abcdef0123456789abcdef",
    graphVersion: "v27.0",
    instagramAppId: IG_APP_ID,
    instagramAppSecret: IG_APP_SECRET,
  });
  const lines: string[] = [];
  const config = loadConfig(["meta", "instagramLogin"], envFor(fake));
  const ig = createInstagramLogin(config, memoryLogger(lines));
  const account = fake.instagram.account("ig_demo");

  /** Through the consent window to a code, as the browser does. */
  async function codeFor(name = "ig_demo", declined: string[] = []): Promise<string> {
    const url = ig.authorizeUrl({ state: "a-state" });
    const back = new URL(await fake.instagram.approve(url, name, declined));
    assert.equal(back.hash, "#_", "Meta appends #_ to the redirect");
    assert.equal(back.searchParams.get("state"), "a-state");
    return back.searchParams.get("code")!;
  }

  try {
    await t.step(
      "the authorize URL: www.instagram.com's window, the Instagram app, both permissions",
      async () => {
        const url = new URL(ig.authorizeUrl({ state: "a-state" }));
        assert.equal(`${url.origin}${url.pathname}`, `${fake.instagramBaseUrls.dialog}/oauth/authorize`);
        assert.equal(url.searchParams.get("client_id"), IG_APP_ID);
        assert.equal(url.searchParams.get("redirect_uri"), REDIRECT_URI);
        assert.equal(url.searchParams.get("response_type"), "code");
        assert.equal(url.searchParams.get("scope"), SCOPES.join(","));
        assert.ok(!url.searchParams.has("code_challenge"), "no PKCE: not documented for Instagram Login");
        const page = await fetch(url);
        assert.equal(page.status, 200);
        assert.match(await page.text(), /Instagram sandbox \(not Meta\)[\s\S]*no Facebook Page/);
        assert.equal(
          new URL(ig.authorizeUrl({ state: "s" }, { rerequest: true })).searchParams.get("force_reauth"),
          "true",
        );
        const cancelled = new URL(await fake.instagram.cancel(url.toString()));
        assert.equal(cancelled.searchParams.get("error"), "access_denied");
        assert.equal(cancelled.searchParams.get("error_reason"), "user_denied");
      },
    );

    let longLived = "";
    await t.step(
      "code -> short-lived token with the bare-integer user_id digit for digit; used once",
      async () => {
        const code = await codeFor();
        const exchanged = await ig.exchangeCode(code, undefined, deadline());
        assert.equal(exchanged.userId, account.id, "digit for digit");
        assert.ok(BigInt(exchanged.userId) > 2n ** 53n, "above 2^53: a JS number would have changed it");
        assert.notEqual(
          String(Number(exchanged.userId)),
          exchanged.userId,
          "JSON.parse alone would have rounded it",
        );
        assert.deepEqual(exchanged.permissions, SCOPES);
        assert.match(exchanged.accessToken, /^IGAAshort/);

        const before = fake.calls.ig_code_exchange;
        await rejectsWith(
          ig.exchangeCode(code, undefined, deadline()),
          "oauth_code_invalid",
          "a code is single-use",
        );
        assert.equal(fake.calls.ig_code_exchange, before + 1, "never retried once Meta answered");

        const long = await ig.exchangeForLongLivedToken(exchanged.accessToken, deadline());
        assert.match(long.accessToken, /^IGAAlong/);
        assert.ok(Math.abs(long.expiresIn - 5_183_944) <= 2, "60 days");
        longLived = long.accessToken;
      },
    );

    await t.step("/me: user_id is the professional account id, id another (app-scoped) number", async () => {
      const me = await ig.readAccount(longLived, deadline());
      assert.deepEqual(me, {
        userId: account.userId,
        id: account.id,
        username: account.username,
        accountType: "BUSINESS",
      });
      assert.notEqual(me.userId, me.id);
      assert.ok(BigInt(me.userId) > 2n ** 53n && BigInt(me.id) > 2n ** 53n);
    });

    await t.step(
      "subscribed_apps: subscribe, read, unsubscribe; a dropped subscription reads empty",
      async () => {
        await ig.subscribe(longLived, ["messages", "messaging_seen"], deadline());
        assert.deepEqual(await ig.subscriptions(longLived, deadline()), ["messages", "messaging_seen"]);
        fake.instagram.dropSubscription("ig_demo");
        assert.deepEqual(await ig.subscriptions(longLived, deadline()), []);
        await ig.subscribe(longLived, ["messages"], deadline());
        await ig.unsubscribe(longLived, deadline());
        assert.deepEqual(await ig.subscriptions(longLived, deadline()), []);
        await rejectsWith(
          ig.subscribe(longLived, ["feed"], deadline()),
          "meta_error",
          "a Page field is refused",
        );
      },
    );

    await t.step("refresh: refused before 24 hours, allowed after, refused once expired", async () => {
      await rejectsWith(ig.refresh(longLived, deadline()), "meta_error", "a fresh token");
      fake.instagram.ageToken(longLived, 25 * HOUR);
      const refreshed = await ig.refresh(longLived, deadline());
      assert.notEqual(refreshed.accessToken, longLived);
      assert.ok(Math.abs(refreshed.expiresIn - 5_183_944) <= 2, "60 days from the refresh");
      assert.equal((await ig.readAccount(refreshed.accessToken, deadline())).userId, account.userId);
      await rejectsWith(
        ig.refresh(refreshed.accessToken, deadline()),
        "meta_error",
        "the new token is fresh again",
      );
      fake.instagram.expireToken(longLived);
      await rejectsWith(ig.refresh(longLived, deadline()), "meta_token_invalid", "expired: reconnect");
      await rejectsWith(ig.readAccount(longLived, deadline()), "meta_token_invalid");
      fake.instagram.killToken(refreshed.accessToken);
      await rejectsWith(
        ig.readAccount(refreshed.accessToken, deadline()),
        "meta_token_invalid",
        "killed (190)",
      );
    });

    await t.step("a permission unticked: missing from the answer, and its fields refused", async () => {
      const exchanged = await ig.exchangeCode(
        await codeFor("ig_demo", ["instagram_business_manage_messages"]),
        undefined,
        deadline(),
      );
      assert.deepEqual(exchanged.permissions, ["instagram_business_basic"]);
      await rejectsWith(ig.subscribe(exchanged.accessToken, ["messages"], deadline()), "permissions_missing");
    });

    await t.step("another redirect_uri than the window's: the code is refused", async () => {
      const other = createInstagramLogin(
        loadConfig(
          ["meta", "instagramLogin"],
          envFor(fake, { INSTAGRAM_LOGIN_REDIRECT_URI: `${REDIRECT_URI}/x` }),
        ),
        memoryLogger(lines),
      );
      await rejectsWith(other.exchangeCode(await codeFor(), undefined, deadline()), "oauth_code_invalid");
    });

    await t.step(
      "transient failures are retried (not the code exchange once answered); others are not",
      async () => {
        const token = (await ig.exchangeCode(await codeFor(), undefined, deadline())).accessToken;
        let before = fake.calls.ig_me;
        fake.inject("ig_me", { status: 500 });
        assert.equal((await ig.readAccount(token, deadline())).userId, account.userId);
        assert.equal(fake.calls.ig_me, before + 2, "one retry");

        before = fake.calls.ig_code_exchange;
        fake.inject("ig_code_exchange", { status: 500 });
        await rejectsWith(ig.exchangeCode(await codeFor(), undefined, deadline()), "meta_error");
        assert.equal(fake.calls.ig_code_exchange, before + 1, "answered: never retried");

        before = fake.calls.ig_me;
        const limited = {
          status: 400,
          error: { code: 4, message: "(#4) Application request limit reached" },
        };
        fake.inject("ig_me", limited, limited, limited);
        await rejectsWith(ig.readAccount(token, deadline()), "meta_rate_limited");
        assert.equal(fake.calls.ig_me, before + 3, "retried up to INSTAGRAM_META_MAX_RETRIES (2)");

        fake.inject("ig_me", { delayMs: 3_000 });
        await rejectsWith(ig.readAccount(token, AbortSignal.timeout(500)), "meta_timeout");
        fake.clearFaults();
      },
    );

    await t.step("without the Instagram app: every call refuses as not configured, before Meta", async () => {
      const before = { ...fake.calls };
      const none = createInstagramLogin(
        loadConfig(["meta", "instagramLogin"], {
          INSTAGRAM_APP_ID: "1234567890123",
          INSTAGRAM_APP_SECRET: "0123456789abcdef0123456789abcdef",
        }),
        memoryLogger(lines),
      );
      assert.throws(
        () => none.authorizeUrl({ state: "s" }),
        (e) => e instanceof AppError && e.code === "login_path_not_configured",
      );
      await rejectsWith(none.exchangeCode("code", undefined, deadline()), "login_path_not_configured");
      await rejectsWith(none.refresh("token", deadline()), "login_path_not_configured");
      assert.deepEqual(fake.calls, before);
    });

    await t.step("no token, code or secret in any log line", () => {
      assert.ok(lines.length > 5, "failures were logged");
      const secrets = [...fake.secrets, IG_APP_SECRET];
      for (const line of lines) {
        for (const secret of secrets) assert.ok(!line.includes(secret), `a secret in: ${line.slice(0, 200)}`);
      }
    });
  } finally {
    await fake.close();
  }
});

Deno.test("ids are read as written: bare integers above 2^53 and Meta's wrapped sample shapes", () => {
  assert.equal(
    idsAsStrings('{"access_token":"IGAA","user_id":27640875392278831,"permissions":["a"]}'),
    '{"access_token":"IGAA","user_id":"27640875392278831","permissions":["a"]}',
  );
  assert.equal(idsAsStrings('{"id": 17841400000000001 }'), '{"id": "17841400000000001" }');
  assert.equal(idsAsStrings('{"user_id":"1784"}'), '{"user_id":"1784"}', "strings stay as they are");
  assert.equal(
    idsAsStrings('{"text":"\\"id\\":12"}'),
    '{"text":"\\"id\\":12"}',
    "inside a string: untouched",
  );
});

Deno.test("the shapes of Meta's pages are read too: {data:[…]}, permissions as a string, string ids", async () => {
  // "Business Login for Instagram" shows the code exchange wrapped, permissions comma-separated; "Get
  // Started" shows /me wrapped with string ids. Real answers are flat (the fake's); both must work.
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (request) => {
    const path = new URL(request.url).pathname;
    if (path.endsWith("/oauth/access_token")) {
      return new Response(
        '{"data":[{"access_token":"IGAAwrapped","user_id":"17841400000000001","permissions":"instagram_business_basic,instagram_business_manage_messages"}]}',
      );
    }
    return new Response('{"data":[{"id":"27640875392278831","user_id":17841400000000001,"username":"dr"}]}');
  });
  try {
    const base = `http://127.0.0.1:${server.addr.port}`;
    const ig = createInstagramLogin(
      loadConfig(["meta", "instagramLogin"], {
        INSTAGRAM_LOGIN_APP_ID: IG_APP_ID,
        INSTAGRAM_LOGIN_APP_SECRET: IG_APP_SECRET,
        INSTAGRAM_LOGIN_REDIRECT_URI: REDIRECT_URI,
        INSTAGRAM_LOGIN_API_BASE_URL: base,
        INSTAGRAM_LOGIN_GRAPH_BASE_URL: base,
      }),
      memoryLogger([]),
    );
    assert.deepEqual(await ig.exchangeCode("code", undefined, deadline()), {
      accessToken: "IGAAwrapped",
      userId: "17841400000000001",
      permissions: SCOPES,
    });
    assert.deepEqual(await ig.readAccount("IGAAwrapped", deadline()), {
      userId: "17841400000000001",
      id: "27640875392278831",
      username: "dr",
      accountType: undefined,
    });
  } finally {
    await server.shutdown();
  }
});

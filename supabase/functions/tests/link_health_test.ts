// The mapping from what Meta answers about a link to its status reason (link_health.ts), and the usage
// headers' highest figure (usage.ts). Pure functions: no stack, no database.
import assert from "node:assert/strict";
import { AppError } from "../_shared/errors.ts";
import { classifyGraphError } from "../_shared/meta/error_class.ts";
import type { DebugToken } from "../_shared/meta/graph.ts";
import {
  assessPageToken,
  type LinkStatusReason,
  reasonFromGraphError,
  REQUIRED_LINK_SCOPES,
} from "../_shared/meta/link_health.ts";
import { highestUsagePercent } from "../_shared/meta/usage.ts";

const APP_ID = "1234567890123";
const PAGE_ID = "100000000000001";
const INSTAGRAM_ID = "17841400000000001";
const now = new Date("2026-12-10T12:00:00Z");
const expected = { appId: APP_ID, pageId: PAGE_ID, instagramAccountId: INSTAGRAM_ID, now };
const days = (n: number) => new Date(now.getTime() + n * 86_400_000);

/** A healthy Page token's report, as a recorded real answer for a Page token looks (bk-rs fixtures). */
function pageToken(overrides: Partial<DebugToken> = {}): DebugToken {
  return {
    isValid: true,
    otherApp: false,
    type: "PAGE",
    appId: APP_ID,
    profileId: PAGE_ID,
    userId: "10200000000000001",
    dataAccessExpiresAt: days(80),
    scopes: ["pages_show_list", ...REQUIRED_LINK_SCOPES, "public_profile"],
    granularScopes: [
      { scope: "pages_show_list", targetIds: [PAGE_ID] },
      { scope: "pages_manage_metadata", targetIds: [PAGE_ID, "100000000000002"] },
      { scope: "instagram_basic", targetIds: [INSTAGRAM_ID] },
      { scope: "instagram_manage_messages" },
    ],
    ...overrides,
  };
}

/** What classifyGraphError makes of a Graph error answer at `step`. */
function graphError(
  code: number,
  subcode?: number,
  step: "read_subscriptions" | "debug_token" = "read_subscriptions",
) {
  return classifyGraphError(step, 400, {
    error: { message: "x", type: "OAuthException", code, error_subcode: subcode },
  }, new Headers()).error;
}

Deno.test("the required permissions are the ones Instagram messaging webhooks need", () => {
  assert.deepEqual([...REQUIRED_LINK_SCOPES].sort(), [
    "instagram_basic",
    "instagram_manage_messages",
    "pages_manage_metadata",
  ]);
});

Deno.test("reasonFromGraphError: each 190 subcode of Handling Errors, and none", () => {
  const cases: [number | undefined, LinkStatusReason][] = [
    [undefined, "token_invalid"],
    [458, "app_removed"],
    [459, "account_checkpointed"],
    [460, "password_changed"],
    [463, "token_expired"],
    [464, "account_checkpointed"],
    [467, "token_invalid"],
    [492, "page_role_lost"],
    [493, "data_access_expired"],
    [466, "token_invalid"],
  ];
  for (const [subcode, reason] of cases) {
    assert.equal(reasonFromGraphError(graphError(190, subcode)), reason, `subcode ${subcode}`);
  }
});

Deno.test("reasonFromGraphError: a missing permission on a stored link's call, and what is not the link's fault", () => {
  assert.equal(reasonFromGraphError(graphError(10)), "permissions_missing");
  assert.equal(reasonFromGraphError(graphError(200)), "permissions_missing");
  assert.equal(reasonFromGraphError(graphError(299)), "permissions_missing");
  // Meta down, throttled, or a plain bad request: nothing to say about the link.
  assert.equal(reasonFromGraphError(graphError(2)), undefined);
  assert.equal(reasonFromGraphError(graphError(4)), undefined);
  assert.equal(reasonFromGraphError(graphError(100)), undefined);
  assert.equal(reasonFromGraphError(new AppError("meta_timeout")), undefined);
  assert.equal(reasonFromGraphError(new Error("network")), undefined);
  assert.equal(reasonFromGraphError(undefined), undefined);
  // At debug_token a 190 is about our own app token: the app is misconfigured, no link is to blame.
  assert.equal(reasonFromGraphError(graphError(190, 460, "debug_token")), undefined);
});

Deno.test("reasonFromGraphError: debug_token's refusal of another app's token is a mismatch", () => {
  const error = classifyGraphError("debug_token", 400, {
    error: {
      message: "(#100) The App_id in the input_token did not match the Viewing App",
      type: "OAuthException",
      code: 100,
    },
  }, new Headers()).error;
  assert.equal(reasonFromGraphError(error), "page_token_mismatch");
});

Deno.test("assessPageToken: a healthy Page token has no reason, and reports its dates", () => {
  const expiresAt = days(50);
  assert.deepEqual(assessPageToken(pageToken({ expiresAt }), expected), {
    reason: undefined,
    reconnectBy: days(80),
    tokenExpiresAt: expiresAt,
  });
  // expires_at 0 (never) arrives as undefined: no tokenExpiresAt, never a guessed date.
  const never = assessPageToken(
    pageToken({ expiresAt: undefined, dataAccessExpiresAt: undefined }),
    expected,
  );
  assert.deepEqual(never, { reason: undefined, reconnectBy: undefined, tokenExpiresAt: undefined });
});

Deno.test("assessPageToken: an invalid token's error subcode decides, as on any Graph call", () => {
  const cases: [number, LinkStatusReason][] = [
    [458, "app_removed"],
    [459, "account_checkpointed"],
    [460, "password_changed"],
    [463, "token_expired"],
    [464, "account_checkpointed"],
    [467, "token_invalid"],
    [492, "page_role_lost"],
    [493, "data_access_expired"],
  ];
  for (const [subcode, reason] of cases) {
    const debug = pageToken({ isValid: false, error: { code: 190, subcode, message: "x" } });
    assert.equal(assessPageToken(debug, expected).reason, reason, `subcode ${subcode}`);
  }
});

Deno.test("assessPageToken: an invalid token without subcode, by its dates, else token_invalid", () => {
  const invalid = { isValid: false, error: { code: 190, message: "x" } };
  assert.equal(
    assessPageToken(pageToken({ ...invalid, expiresAt: days(-1) }), expected).reason,
    "token_expired",
  );
  assert.equal(
    assessPageToken(pageToken({ ...invalid, dataAccessExpiresAt: days(-1) }), expected).reason,
    "data_access_expired",
  );
  assert.equal(assessPageToken(pageToken(invalid), expected).reason, "token_invalid");
  // A token Meta cannot read at all: no type, no app, nothing but the error.
  const unreadable: DebugToken = {
    isValid: false,
    otherApp: false,
    scopes: [],
    granularScopes: [],
    error: { code: 190, message: "Invalid OAuth access token - Cannot parse access token" },
  };
  assert.deepEqual(assessPageToken(unreadable, expected), {
    reason: "token_invalid",
    reconnectBy: undefined,
    tokenExpiresAt: undefined,
  });
});

Deno.test("assessPageToken: not this app's, not a Page token, or another Page's: page_token_mismatch", () => {
  assert.equal(
    assessPageToken({ isValid: false, otherApp: true, scopes: [], granularScopes: [] }, expected).reason,
    "page_token_mismatch",
  );
  assert.equal(assessPageToken(pageToken({ appId: "999" }), expected).reason, "page_token_mismatch");
  assert.equal(
    assessPageToken(pageToken({ type: "USER", profileId: undefined }), expected).reason,
    "page_token_mismatch",
  );
  assert.equal(
    assessPageToken(pageToken({ profileId: "100000000000002" }), expected).reason,
    "page_token_mismatch",
  );
});

Deno.test("assessPageToken: data access over, with the date kept as reconnectBy", () => {
  const result = assessPageToken(pageToken({ dataAccessExpiresAt: days(-2) }), expected);
  assert.deepEqual(result, {
    reason: "data_access_expired",
    reconnectBy: days(-2),
    tokenExpiresAt: undefined,
  });
  // Exactly now counts as over.
  assert.equal(
    assessPageToken(pageToken({ dataAccessExpiresAt: now }), expected).reason,
    "data_access_expired",
  );
});

Deno.test("assessPageToken: a required permission missing, or granted for other Pages only", () => {
  for (const scope of REQUIRED_LINK_SCOPES) {
    const scopes = pageToken().scopes.filter((granted) => granted !== scope);
    assert.equal(assessPageToken(pageToken({ scopes }), expected).reason, "permissions_missing", scope);
  }
  // pages_manage_metadata granted, but for other Pages than this one.
  const otherPages = pageToken({
    granularScopes: [{ scope: "pages_manage_metadata", targetIds: ["100000000000002"] }],
  });
  assert.equal(assessPageToken(otherPages, expected).reason, "permissions_missing");
  // instagram_basic granted for another Instagram account.
  const otherAccount = pageToken({
    granularScopes: [{ scope: "instagram_basic", targetIds: ["17841400000000009"] }],
  });
  assert.equal(assessPageToken(otherAccount, expected).reason, "permissions_missing");
  // ... which cannot be judged when the link does not know its Instagram account: it passes.
  assert.equal(
    assessPageToken(otherAccount, { ...expected, instagramAccountId: undefined }).reason,
    undefined,
  );
  // A permission this link does not need may target other Pages.
  const unrelated = pageToken({
    granularScopes: [{ scope: "pages_show_list", targetIds: ["100000000000002"] }],
  });
  assert.equal(assessPageToken(unrelated, expected).reason, undefined);
});

Deno.test("highestUsagePercent: the highest figure of X-App-Usage, X-Page-Usage and X-Business-Use-Case-Usage", () => {
  assert.equal(highestUsagePercent(new Headers()), undefined);
  assert.equal(
    highestUsagePercent(
      new Headers({ "x-app-usage": '{"call_count":28,"total_time":25,"total_cputime":61}' }),
    ),
    61,
  );
  assert.equal(
    highestUsagePercent(
      new Headers({ "X-Page-Usage": '{"call_count":77,"total_time":1,"total_cputime":2}' }),
    ),
    77,
  );
  const business = {
    "100000000000001": [
      {
        type: "pages",
        call_count: 12,
        total_cputime: 45,
        total_time: 30,
        estimated_time_to_regain_access: 0,
      },
    ],
    "100000000000002": [
      {
        type: "pages",
        call_count: 5,
        total_cputime: 1,
        total_time: 90,
        estimated_time_to_regain_access: 400,
      },
    ],
  };
  assert.equal(
    highestUsagePercent(
      new Headers({
        "x-app-usage": '{"call_count":10,"total_time":10,"total_cputime":10}',
        "x-business-use-case-usage": JSON.stringify(business),
      }),
    ),
    90,
    "across every header and business object; estimated_time_to_regain_access (minutes) is not a figure",
  );
});

Deno.test("highestUsagePercent: numeric strings count; malformed headers and values are skipped", () => {
  assert.equal(
    highestUsagePercent(new Headers({ "x-app-usage": '{"call_count":"30","total_time":"20.5"}' })),
    30,
  );
  assert.equal(highestUsagePercent(new Headers({ "x-app-usage": "not json" })), undefined);
  assert.equal(
    highestUsagePercent(new Headers({ "x-app-usage": '{"call_count":"lots","other":99}' })),
    undefined,
  );
  assert.equal(highestUsagePercent(new Headers({ "x-app-usage": "[80]" })), undefined);
  assert.equal(
    highestUsagePercent(new Headers({ "x-business-use-case-usage": '{"1":{"call_count":80}}' })),
    undefined,
    "a business object's use cases are a list",
  );
  assert.equal(
    highestUsagePercent(
      new Headers({
        "x-app-usage": "broken",
        "x-business-use-case-usage": '{"1":[{"call_count":-5,"total_time":42}]}',
      }),
    ),
    42,
  );
});

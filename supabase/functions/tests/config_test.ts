// Start-up validation: every kind of bad value stops the function with one line per variable naming it
// and saying what it must be: never its value (most are secrets), never a stack trace.
import assert from "node:assert/strict";
import { bootFailure, startFunction } from "../../../scripts/lib/function_process.ts";
import { CONFIG_PARTS, ConfigError, decodeBase64, loadConfig } from "../_shared/config.ts";

const APP_SECRET = "a-very-secret-app-secret-value-123";
const SECRET_KEY = "sb_secret_value_never_printed_0123";

const good: Record<string, string> = {
  INSTAGRAM_APP_ID: "1234567890",
  INSTAGRAM_APP_SECRET: APP_SECRET,
  INSTAGRAM_REDIRECT_URI: "https://project.supabase.co/functions/v1/instagram-callback",
  INSTAGRAM_TOKEN_ENCRYPTION_KEY: "ZGV2LW9ubHkta2V5LWRvLW5vdC11c2UtaW4tcHJvZCE=",
  INSTAGRAM_WEBHOOK_VERIFY_TOKEN: "a-verify-token-for-these-tests",
  SUPABASE_URL: "https://project.supabase.co",
  SUPABASE_SECRET_KEYS: JSON.stringify({ default: SECRET_KEY }),
};

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(CONFIG_PARTS, env);
    return [];
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error; // anything else escaping loadConfig is the bug this test looks for
  }
}

Deno.test("a good configuration loads, with every default", () => {
  const config = loadConfig(CONFIG_PARTS, good);
  assert.equal(config.meta.graphVersion, "v27.0");
  assert.equal(config.login.pkce, true);
  assert.deepEqual(config.webhooks.pageFields, [
    "messages",
    "messaging_postbacks",
    "message_reactions",
    "message_reads",
  ]);
  assert.equal(config.database.secretKey, SECRET_KEY);
  assert.deepEqual(
    config.tokens.keys,
    [{ id: "legacy", key: decodeBase64(good.INSTAGRAM_TOKEN_ENCRYPTION_KEY) }],
    "the old single key alone: a ring of one key, legacy",
  );
  assert.equal(String(config.sessions.jwks), "https://project.supabase.co/auth/v1/.well-known/jwks.json");
  assert.deepEqual(
    loadConfig(["webhooks"], { ...good, INSTAGRAM_WEBHOOK_FIELDS: "" }).webhooks.pageFields,
    [],
    "empty: no subscription",
  );
  assert.equal(
    loadConfig(["database"], {
      ...good,
      SUPABASE_SECRET_KEYS: "",
      SUPABASE_SERVICE_ROLE_KEY: "eyJ.legacy.key",
    })
      .database.secretKey,
    "eyJ.legacy.key",
  );
});

Deno.test("only the parts a function names are read and checked: a function needing one secret needs no other", () => {
  // The database part alone: no INSTAGRAM_* variable is required, and a bad one elsewhere is not its concern.
  const database = loadConfig(["database"], {
    SUPABASE_URL: "https://project.supabase.co/",
    SUPABASE_SECRET_KEYS: JSON.stringify({ default: SECRET_KEY }),
    INSTAGRAM_ALLOWED_ORIGINS: "not an origin",
  });
  assert.deepEqual(Object.keys(database), ["database"]);
  assert.deepEqual(database.database, {
    url: "https://project.supabase.co",
    secretKey: SECRET_KEY,
    timeoutMs: 5000,
  });
  // The same bad value is refused by a part that reads it, with the usual single line.
  assert.throws(
    () => loadConfig(["cors"], { INSTAGRAM_ALLOWED_ORIGINS: "not an origin" }),
    (error) =>
      error instanceof ConfigError && error.problems.length === 1 &&
      error.problems[0].startsWith("INSTAGRAM_ALLOWED_ORIGINS must be a comma-separated list of origins"),
  );
  // A part's required variables are still required, each once even where two parts share it.
  assert.throws(
    () => loadConfig(["database", "sessions"], {}),
    (error) =>
      error instanceof ConfigError && error.problems.filter((p) =>
          p === "SUPABASE_URL is required"
        ).length === 1 &&
      error.problems.some((p) => p.startsWith("SUPABASE_SECRET_KEYS is required")),
  );
});

Deno.test("every kind of bad value: one line naming the variable and what it must be", () => {
  const cases: [string, string, RegExp][] = [
    ["INSTAGRAM_APP_ID", "abc", /^INSTAGRAM_APP_ID must be the numeric Meta app id/],
    ["INSTAGRAM_APP_SECRET", "short", /^INSTAGRAM_APP_SECRET must be the Meta app secret/],
    [
      "INSTAGRAM_REDIRECT_URI",
      "https://<project-ref>.supabase.co/functions/v1/x",
      /^INSTAGRAM_REDIRECT_URI must be an https URL/,
    ],
    ["INSTAGRAM_REDIRECT_URI", "not a url", /^INSTAGRAM_REDIRECT_URI must be an https URL/],
    ["INSTAGRAM_REDIRECT_URI", "http://example.com/cb", /^INSTAGRAM_REDIRECT_URI must be an https URL/],
    ["INSTAGRAM_REDIRECT_URI", "javascript:alert(1)", /^INSTAGRAM_REDIRECT_URI must be an https URL/],
    ["INSTAGRAM_REDIRECT_URI", "https://project.supabase.co/functions/v1/cb#x", /without a #fragment/],
    ["INSTAGRAM_FRONTEND_REDIRECT_URI", "https://app.example.com/#/settings", /without a #fragment/],
    [
      "INSTAGRAM_TOKEN_ENCRYPTION_KEY",
      "c2hvcnQta2V5",
      /^INSTAGRAM_TOKEN_ENCRYPTION_KEY must be 32 random bytes/,
    ],
    [
      "INSTAGRAM_TOKEN_ENCRYPTION_KEY",
      "%%% not base64 %%%",
      /^INSTAGRAM_TOKEN_ENCRYPTION_KEY must be 32 random bytes/,
    ],
    ["INSTAGRAM_GRAPH_VERSION", "24", /^INSTAGRAM_GRAPH_VERSION must be a Graph API version/],
    ["INSTAGRAM_SCOPES", "pages_show_list, DROP TABLE", /^INSTAGRAM_SCOPES must be a comma-separated list/],
    ["INSTAGRAM_SCOPES", " , ,, ", /^INSTAGRAM_SCOPES must be .* \(at least one\)/],
    ["INSTAGRAM_WEBHOOK_FIELDS", "messages;feed", /^INSTAGRAM_WEBHOOK_FIELDS must be a comma-separated list/],
    ["INSTAGRAM_CONFIG_ID", "cfg-1", /^INSTAGRAM_CONFIG_ID must be the numeric/],
    ["INSTAGRAM_PKCE", "yes", /^INSTAGRAM_PKCE must be on or off/],
    [
      "INSTAGRAM_WEBHOOK_VERIFY_TOKEN",
      "too-short",
      /^INSTAGRAM_WEBHOOK_VERIFY_TOKEN must be 16 to 256 printable/,
    ],
    [
      "INSTAGRAM_WEBHOOK_VERIFY_TOKEN",
      "has spaces in the token",
      /^INSTAGRAM_WEBHOOK_VERIFY_TOKEN must be 16/,
    ],
    ["INSTAGRAM_STATE_TTL_SECONDS", "5", /^INSTAGRAM_STATE_TTL_SECONDS must be a whole number of seconds/],
    ["INSTAGRAM_STATE_TTL_SECONDS", "ten", /^INSTAGRAM_STATE_TTL_SECONDS must be a whole number of seconds/],
    ["INSTAGRAM_META_TIMEOUT_MS", "1.5", /^INSTAGRAM_META_TIMEOUT_MS must be milliseconds/],
    ["INSTAGRAM_META_MAX_RETRIES", "9", /^INSTAGRAM_META_MAX_RETRIES must be a whole number from 0 to 5/],
    [
      "INSTAGRAM_ALLOWED_ORIGINS",
      "https://app.example.com/path",
      /^INSTAGRAM_ALLOWED_ORIGINS must be a comma-separated list of origins/,
    ],
    ["INSTAGRAM_GRAPH_BASE_URL", "ftp://graph", /^INSTAGRAM_GRAPH_BASE_URL must be an https URL/],
    ["SUPABASE_URL", "<project-url>", /^SUPABASE_URL must be the project's https URL/],
    ["SUPABASE_SECRET_KEYS", '{"default":""}', /^SUPABASE_SECRET_KEYS must be a JSON map of secret keys/],
    ["SUPABASE_SECRET_KEYS", "sb_secret_not_json", /^SUPABASE_SECRET_KEYS must be a JSON map of secret keys/],
    ["SUPABASE_JWKS", "{not json", /^SUPABASE_JWKS must be a JSON Web Key Set/],
    ["SUPABASE_JWKS_URL", "http://evil.example/jwks", /^SUPABASE_JWKS_URL must be an https URL/],
  ];
  for (const [name, value, expected] of cases) {
    const problems = problemsOf({ ...good, [name]: value });
    assert.equal(problems.length, 1, `${name}=${value}: ${problems.join(" | ")}`);
    assert.match(problems[0], expected, `${name}=${value}`);
    assert.ok(!problems[0].includes(value), `${name}: the value is never echoed`);
  }
  for (const name of ["INSTAGRAM_REDIRECT_URI", "SUPABASE_URL"]) {
    const { [name]: _, ...without } = good;
    assert.deepEqual(problemsOf(without), [`${name} is required`]);
  }
  // Half of the Facebook app: the other half is named (either app may be configured alone, not half).
  for (
    const [name, other] of [["INSTAGRAM_APP_ID", "INSTAGRAM_APP_SECRET"], [
      "INSTAGRAM_APP_SECRET",
      "INSTAGRAM_APP_ID",
    ]]
  ) {
    const { [name]: _, ...without } = good;
    assert.deepEqual(problemsOf(without), [
      `${name} is required: ${other} is set, and the Facebook Login app needs both`,
    ]);
  }
  const { SUPABASE_SECRET_KEYS: _, ...noKey } = good;
  assert.match(problemsOf(noKey)[0], /^SUPABASE_SECRET_KEYS is required/);
});

// Two keys as `openssl rand -base64 32` prints them, and one more: none may ever appear in a message.
const KEY_1 = btoa(String.fromCharCode(...Uint8Array.from({ length: 32 }, (_, i) => (i * 37 + 250) % 256)));
const KEY_2 = btoa(String.fromCharCode(...Uint8Array.from({ length: 32 }, (_, i) => (i * 11 + 3) % 256)));
const { INSTAGRAM_TOKEN_ENCRYPTION_KEY: OLD_KEY, ...withoutKey } = good;

Deno.test("INSTAGRAM_TOKEN_ENCRYPTION_KEYS: id:key pairs, primary first, in standard or URL-safe base64", () => {
  const urlSafe = KEY_1.replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  const { tokens } = loadConfig(["tokens"], {
    INSTAGRAM_TOKEN_ENCRYPTION_KEYS: ` k2:${KEY_2} , legacy : ${urlSafe},k-1_old:${OLD_KEY}`,
  });
  assert.deepEqual(tokens.keys, [
    { id: "k2", key: decodeBase64(KEY_2) },
    { id: "legacy", key: decodeBase64(KEY_1) },
    { id: "k-1_old", key: decodeBase64(OLD_KEY) },
  ]);
  assert.deepEqual(
    loadConfig(["tokens"], { ...withoutKey, INSTAGRAM_TOKEN_ENCRYPTION_KEYS: `k1:${KEY_1}` }).tokens,
    {
      keys: [{ id: "k1", key: decodeBase64(KEY_1) }],
    },
  );
  // Empty counts as unset: the old variable alone still works beside an empty new one.
  assert.equal(
    loadConfig(["tokens"], { ...good, INSTAGRAM_TOKEN_ENCRYPTION_KEYS: "" }).tokens.keys[0].id,
    "legacy",
  );
});

Deno.test("INSTAGRAM_TOKEN_ENCRYPTION_KEYS refused: one line each, naming at most a valid id, never a key", () => {
  const cases: [string, string][] = [
    [
      " , ,",
      "must be comma-separated id:base64key pairs, primary first (README, Rotating the token encryption key)",
    ],
    [
      KEY_1,
      "must be comma-separated id:base64key pairs, primary first: pair 1 does not start with a key id (1 to 32 of a-z, 0-9, _ and -, first a letter or digit) and a colon",
    ],
    [
      `K1:${KEY_1}`,
      "must be comma-separated id:base64key pairs, primary first: pair 1 does not start with a key id (1 to 32 of a-z, 0-9, _ and -, first a letter or digit) and a colon",
    ],
    [
      `${"k".repeat(33)}:${KEY_1}`,
      "must be comma-separated id:base64key pairs, primary first: pair 1 does not start with a key id (1 to 32 of a-z, 0-9, _ and -, first a letter or digit) and a colon",
    ],
    [
      `k2:${KEY_2},${KEY_1}`,
      "must be comma-separated id:base64key pairs, primary first: pair 2 does not start with a key id (1 to 32 of a-z, 0-9, _ and -, first a letter or digit) and a colon",
    ],
    [
      `k2:${KEY_2},:${KEY_1}`,
      "must be comma-separated id:base64key pairs, primary first: pair 2 does not start with a key id (1 to 32 of a-z, 0-9, _ and -, first a letter or digit) and a colon",
    ],
    [`k1:${KEY_1},k1:${KEY_2}`, "must name each key once: k1 is listed twice"],
    [
      `k2:${KEY_2},k1:c2hvcnQta2V5`,
      "must give each key as 32 random bytes in base64 (openssl rand -base64 32): the key of k1 is not",
    ],
    [
      `k1:${KEY_1.slice(0, 20)}!!${KEY_1.slice(22)}`,
      "must give each key as 32 random bytes in base64 (openssl rand -base64 32): the key of k1 is not",
    ],
    [
      `k1:${KEY_1}:${KEY_2}`,
      "must give each key as 32 random bytes in base64 (openssl rand -base64 32): the key of k1 is not",
    ],
    [
      `k1:`,
      "must give each key as 32 random bytes in base64 (openssl rand -base64 32): the key of k1 is not",
    ],
  ];
  for (const [value, expected] of cases) {
    const problems = problemsOf({ ...withoutKey, INSTAGRAM_TOKEN_ENCRYPTION_KEYS: value });
    assert.deepEqual(problems, [`INSTAGRAM_TOKEN_ENCRYPTION_KEYS ${expected}`], value);
    for (const secret of [KEY_1, KEY_2, KEY_1.slice(0, 20), KEY_2.slice(0, 20), "c2hvcnQta2V5"]) {
      assert.ok(!problems[0].includes(secret), `${value}: no key material is echoed`);
    }
  }
});

Deno.test("the token keys: one of the two variables is required, and both at once are refused", () => {
  assert.deepEqual(problemsOf(withoutKey), [
    "INSTAGRAM_TOKEN_ENCRYPTION_KEYS is required (id:base64key pairs, primary first; the single INSTAGRAM_TOKEN_ENCRYPTION_KEY of older set-ups also works)",
  ]);
  const both = problemsOf({ ...good, INSTAGRAM_TOKEN_ENCRYPTION_KEYS: `k2:${KEY_2},legacy:${OLD_KEY}` });
  assert.deepEqual(both, [
    "INSTAGRAM_TOKEN_ENCRYPTION_KEY and INSTAGRAM_TOKEN_ENCRYPTION_KEYS are both set: keep one (to move, list the old key as legacy:<key> in INSTAGRAM_TOKEN_ENCRYPTION_KEYS; README, Rotating the token encryption key)",
  ]);
  assert.ok(!both[0].includes(OLD_KEY) && !both[0].includes(KEY_2));
  // Each variable's own problem is still said, once, beside the other's.
  assert.deepEqual(
    problemsOf({
      ...good,
      INSTAGRAM_TOKEN_ENCRYPTION_KEY: "c2hvcnQta2V5",
      INSTAGRAM_TOKEN_ENCRYPTION_KEYS: "k1",
    }),
    [
      "INSTAGRAM_TOKEN_ENCRYPTION_KEYS must be comma-separated id:base64key pairs, primary first: pair 1 does not start with a key id (1 to 32 of a-z, 0-9, _ and -, first a letter or digit) and a colon",
      "INSTAGRAM_TOKEN_ENCRYPTION_KEY must be 32 random bytes in base64 (openssl rand -base64 32)",
      both[0],
    ],
  );
  // A function that does not read the tokens part is not stopped by them.
  assert.doesNotThrow(() => loadConfig(["receiver", "database"], withoutKey));
});

Deno.test("instagram-callback refuses to start with both token key variables set: one line, no key", async () => {
  const { code, output } = await bootFailure("instagram-callback", {
    ...good,
    INSTAGRAM_TOKEN_ENCRYPTION_KEYS: `k2:${KEY_2},legacy:${OLD_KEY}`,
  });
  assert.equal(code, 1);
  assert.deepEqual(output.trim().split("\n"), [
    "instagram-callback: configuration: INSTAGRAM_TOKEN_ENCRYPTION_KEY and INSTAGRAM_TOKEN_ENCRYPTION_KEYS are both set: keep one (to move, list the old key as legacy:<key> in INSTAGRAM_TOKEN_ENCRYPTION_KEYS; README, Rotating the token encryption key)",
    "instagram-callback: cannot serve until the variables above are fixed (see .env.example).",
  ]);
  assert.ok(!output.includes(OLD_KEY) && !output.includes(KEY_2));
});

Deno.test("INSTAGRAM_WEBHOOK_FIELDS takes Page webhook fields only, and says which field is not one", () => {
  // Meta refuses the whole subscription for one non-Page field (restfb/restfb#1210), so finish would
  // fail for every doctor: refused at start-up instead. A field name is no secret, so it is named.
  const refusal = (value: string) => problemsOf({ ...good, INSTAGRAM_WEBHOOK_FIELDS: value });
  assert.deepEqual(refusal("messages,messaging_postbacks,messaging_seen,message_reactions"), [
    "INSTAGRAM_WEBHOOK_FIELDS must be Page webhook fields (POST /{page-id}/subscribed_apps; see README, Meta app set-up): messaging_seen is an Instagram field, chosen in the App Dashboard",
  ]);
  assert.deepEqual(refusal("feed, comments"), [
    "INSTAGRAM_WEBHOOK_FIELDS must be Page webhook fields (POST /{page-id}/subscribed_apps; see README, Meta app set-up): comments is an Instagram field, chosen in the App Dashboard",
  ]);
  assert.deepEqual(refusal("messages,no_such_field"), [
    "INSTAGRAM_WEBHOOK_FIELDS must be Page webhook fields (POST /{page-id}/subscribed_apps; see README, Meta app set-up): no_such_field is not a Page webhook field",
  ]);
  assert.deepEqual(refusal("messages;feed"), [
    "INSTAGRAM_WEBHOOK_FIELDS must be a comma-separated list of Page webhook field names (or empty for none)",
  ]);
  assert.deepEqual(
    loadConfig(["webhooks"], { INSTAGRAM_WEBHOOK_FIELDS: " feed , message_edits,messages " }).webhooks
      .pageFields,
    ["feed", "message_edits", "messages"],
  );
});

Deno.test("instagram-connect refuses to start on an Instagram field in INSTAGRAM_WEBHOOK_FIELDS: one line", async () => {
  const { code, output } = await bootFailure("instagram-connect", {
    ...good,
    INSTAGRAM_WEBHOOK_FIELDS: "messages,messaging_seen",
  });
  assert.equal(code, 1);
  assert.deepEqual(output.trim().split("\n"), [
    "instagram-connect: configuration: INSTAGRAM_WEBHOOK_FIELDS must be Page webhook fields (POST /{page-id}/subscribed_apps; see README, Meta app set-up): messaging_seen is an Instagram field, chosen in the App Dashboard",
    "instagram-connect: cannot serve until the variables above are fixed (see .env.example).",
  ]);
});

for (const name of ["instagram-connect", "instagram-callback"]) {
  Deno.test(`${name} refuses to start: one line per problem, exit code 1, no value, no stack trace`, async () => {
    const { code, output } = await bootFailure(name, {
      ...good,
      INSTAGRAM_APP_ID: "",
      INSTAGRAM_REDIRECT_URI: "https://<project-ref>.supabase.co/functions/v1/instagram-callback",
      INSTAGRAM_TOKEN_ENCRYPTION_KEY: "c2hvcnQta2V5",
      INSTAGRAM_STATE_TTL_SECONDS: "5",
    });
    assert.equal(code, 1);
    const lines = output.trim().split("\n");
    assert.deepEqual(lines, [
      `${name}: configuration: INSTAGRAM_REDIRECT_URI must be an https URL (http only for localhost) without a #fragment, the callback's address`,
      `${name}: configuration: INSTAGRAM_TOKEN_ENCRYPTION_KEY must be 32 random bytes in base64 (openssl rand -base64 32)`,
      `${name}: configuration: INSTAGRAM_STATE_TTL_SECONDS must be a whole number of seconds from 60 to 3600`,
      // Problems spanning several variables come after those of one variable.
      `${name}: configuration: INSTAGRAM_APP_ID is required: INSTAGRAM_APP_SECRET is set, and the Facebook Login app needs both`,
      `${name}: cannot serve until the variables above are fixed (see .env.example).`,
    ]);
    for (const secret of [APP_SECRET, "c2hvcnQta2V5", SECRET_KEY, "<project-ref>"]) {
      assert.ok(!output.includes(secret), "no configured value is printed");
    }
  });
}

Deno.test("each function checks only what it uses: a bad INSTAGRAM_ALLOWED_ORIGINS stops connect, not the callback", async () => {
  const env = { ...good, INSTAGRAM_ALLOWED_ORIGINS: "https://app.example.com/settings" };
  const connect = await bootFailure("instagram-connect", env);
  assert.equal(connect.code, 1);
  assert.match(connect.output, /^instagram-connect: configuration: INSTAGRAM_ALLOWED_ORIGINS must be /m);
  const callback = await startFunction("instagram-callback", env);
  try {
    const answer = await fetch(`${callback.url}/instagram-callback/no-such-route`);
    assert.equal(answer.status, 404, "the callback serves: it does not read INSTAGRAM_ALLOWED_ORIGINS");
    await answer.body?.cancel();
  } finally {
    await callback.stop();
  }
});

Deno.test("instagram-webhook needs only the app secret, its verify token and the database", async () => {
  const webhook = await startFunction("instagram-webhook", {
    INSTAGRAM_APP_SECRET: APP_SECRET,
    INSTAGRAM_WEBHOOK_VERIFY_TOKEN: good.INSTAGRAM_WEBHOOK_VERIFY_TOKEN,
    SUPABASE_URL: good.SUPABASE_URL,
    SUPABASE_SECRET_KEYS: good.SUPABASE_SECRET_KEYS,
  });
  try {
    const answer = await fetch(`${webhook.url}/instagram-webhook?hub.mode=subscribe`);
    assert.equal(answer.status, 403, "it serves, and refuses a handshake without the token");
    await answer.body?.cancel();
  } finally {
    await webhook.stop();
  }
  const { code, output } = await bootFailure("instagram-webhook", {
    ...good,
    INSTAGRAM_WEBHOOK_VERIFY_TOKEN: "",
  });
  assert.equal(code, 1);
  assert.match(output, /^instagram-webhook: configuration: INSTAGRAM_WEBHOOK_VERIFY_TOKEN is required$/m);
});

for (const name of ["instagram-connect", "instagram-callback"]) {
  Deno.test(`${name} where Deno.exit is ignored (Supabase's edge runtime): the same lines, then 503 answers, no crash`, async () => {
    // As the edge runtime does: Deno.exit does nothing, so the module must not go on with no config.
    const script = `
      Deno.exit = () => undefined;
      const { default: fn } = await import(${
      JSON.stringify(new URL(`../${name}/index.ts`, import.meta.url).href)
    });
      const answer = await fn.fetch(new Request("http://localhost/${name}"));
      console.log("answer", answer.status, await answer.text());
    `;
    const result = await new Deno.Command(Deno.execPath(), {
      args: ["eval", script],
      env: { ...good, INSTAGRAM_APP_ID: "", NO_COLOR: "1" },
      clearEnv: true,
    }).output();
    const output = new TextDecoder().decode(result.stdout) + new TextDecoder().decode(result.stderr);
    assert.equal(result.code, 0, output);
    assert.equal(
      output.split("\n").filter((line) => line.includes("INSTAGRAM_APP_ID is required")).length,
      1,
    );
    assert.match(
      output,
      /answer 503 \{"error":\{"code":"not_configured","message":"Connecting Instagram is not available/,
    );
    assert.match(output, /"event":"not_configured"/);
    assert.doesNotMatch(output, /Uncaught|TypeError|\n\s+at /, output);
  });
}

Deno.test("the encryption key is read in standard and URL-safe base64, padded or not", () => {
  const bytes = Uint8Array.from({ length: 32 }, (_, i) => (i * 37 + 250) % 256); // yields '+' and '/'
  const standard = btoa(String.fromCharCode(...bytes));
  assert.match(standard, /[+/]/);
  for (
    const form of [standard, standard.replace(/=+$/, ""), standard.replace(/\+/g, "-").replace(/\//g, "_")]
  ) {
    assert.deepEqual(decodeBase64(form), bytes, form);
  }
});

// Issue 18: the Facebook Login app and the Instagram Login app, either alone or both.
const IG_SECRET = "an-instagram-app-secret-value-456";
const instagramApp = { INSTAGRAM_LOGIN_APP_ID: "9876543210", INSTAGRAM_LOGIN_APP_SECRET: IG_SECRET };
const withoutFacebook = { ...good, INSTAGRAM_APP_ID: "", INSTAGRAM_APP_SECRET: "" };

Deno.test("Instagram Login: each app alone, both, and the defaults", async (t) => {
  await t.step("the Facebook app alone: config.instagramLogin is undefined, the Page path as before", () => {
    const config = loadConfig(CONFIG_PARTS, good);
    assert.deepEqual(config.meta.facebook, { appId: "1234567890", appSecret: APP_SECRET });
    assert.equal(config.instagramLogin, undefined);
    assert.equal(config.receiver.appSecret, APP_SECRET);
    assert.equal(config.receiver.instagramAppSecret, undefined);
  });
  await t.step("the Instagram app alone: config.meta.facebook is undefined, with every default", () => {
    const config = loadConfig(CONFIG_PARTS, { ...withoutFacebook, ...instagramApp });
    assert.equal(config.meta.facebook, undefined);
    assert.deepEqual(config.instagramLogin, {
      appId: "9876543210",
      appSecret: IG_SECRET,
      scopes: ["instagram_business_basic", "instagram_business_manage_messages"],
      redirectUri: good.INSTAGRAM_REDIRECT_URI,
      webhookFields: ["messages", "messaging_seen", "message_reactions", "messaging_postbacks"],
      dialogBaseUrl: "https://www.instagram.com",
      apiBaseUrl: "https://api.instagram.com",
      graphBaseUrl: "https://graph.instagram.com",
    });
    assert.equal(config.receiver.appSecret, undefined);
    assert.equal(config.receiver.instagramAppSecret, IG_SECRET);
  });
  await t.step("both, with every Instagram setting given", () => {
    const config = loadConfig(["meta", "instagramLogin"], {
      ...good,
      ...instagramApp,
      INSTAGRAM_LOGIN_SCOPES: "instagram_business_basic",
      INSTAGRAM_LOGIN_REDIRECT_URI: "https://project.supabase.co/functions/v1/instagram-callback/ig",
      INSTAGRAM_LOGIN_WEBHOOK_FIELDS: "",
      INSTAGRAM_LOGIN_DIALOG_BASE_URL: "http://127.0.0.1:9/ig-www/",
      INSTAGRAM_LOGIN_API_BASE_URL: "http://127.0.0.1:9/ig-api",
      INSTAGRAM_LOGIN_GRAPH_BASE_URL: "http://127.0.0.1:9/ig-graph",
    });
    assert.equal(config.meta.facebook?.appId, "1234567890");
    assert.deepEqual(config.instagramLogin?.scopes, ["instagram_business_basic"]);
    assert.equal(
      config.instagramLogin?.redirectUri,
      "https://project.supabase.co/functions/v1/instagram-callback/ig",
    );
    assert.deepEqual(config.instagramLogin?.webhookFields, [], "empty: no subscription");
    assert.equal(config.instagramLogin?.dialogBaseUrl, "http://127.0.0.1:9/ig-www", "trailing slash trimmed");
  });
  await t.step("neither app: one problem saying what to set", () => {
    assert.deepEqual(problemsOf(withoutFacebook), [
      "INSTAGRAM_APP_ID is required: set INSTAGRAM_APP_ID and INSTAGRAM_APP_SECRET (Facebook Login, the Page path), INSTAGRAM_LOGIN_APP_ID and INSTAGRAM_LOGIN_APP_SECRET (Instagram Login), or both",
      // instagram-webhook's part (receiver), which needs a secret only.
      "INSTAGRAM_APP_SECRET is required (or INSTAGRAM_LOGIN_APP_SECRET, with Instagram Login alone)",
    ]);
  });
  await t.step("a half-configured app names the missing variable, never a value", () => {
    const cases: [Record<string, string>, string][] = [
      [{ ...good, INSTAGRAM_APP_SECRET: "" }, "INSTAGRAM_APP_SECRET is required: INSTAGRAM_APP_ID is set"],
      [{ ...good, INSTAGRAM_LOGIN_APP_ID: "9876543210" }, "INSTAGRAM_LOGIN_APP_SECRET is required"],
      [{ ...withoutFacebook, INSTAGRAM_LOGIN_APP_SECRET: IG_SECRET }, "INSTAGRAM_LOGIN_APP_ID is required"],
      [
        { ...good, ...instagramApp, INSTAGRAM_APP_ID: "" },
        "INSTAGRAM_APP_ID is required: INSTAGRAM_APP_SECRET is set",
      ],
    ];
    for (const [env, expected] of cases) {
      const problems = problemsOf(env);
      assert.equal(problems.length, 1, problems.join("\n"));
      assert.ok(problems[0].startsWith(expected), problems[0]);
      assert.ok(!problems[0].includes(APP_SECRET) && !problems[0].includes(IG_SECRET));
    }
  });
  await t.step("bad Instagram values are refused by name, never echoed", () => {
    const problems = problemsOf({
      ...good,
      INSTAGRAM_LOGIN_APP_ID: "not-digits-secret",
      INSTAGRAM_LOGIN_APP_SECRET: "short",
      INSTAGRAM_LOGIN_GRAPH_BASE_URL: "http://graph.example.com",
    });
    assert.deepEqual(problems.map((problem) => problem.split(" ")[0]), [
      "INSTAGRAM_LOGIN_APP_ID",
      "INSTAGRAM_LOGIN_APP_SECRET",
      "INSTAGRAM_LOGIN_GRAPH_BASE_URL",
    ]);
    assert.ok(
      problems.every((problem) => !problem.includes("not-digits-secret") && !problem.includes("short,")),
    );
  });
  await t.step("Instagram alone without any redirect URI: named", () => {
    const problems = problemsOf({ ...withoutFacebook, ...instagramApp, INSTAGRAM_REDIRECT_URI: "" });
    assert.ok(
      problems.some((problem) => problem.startsWith("INSTAGRAM_LOGIN_REDIRECT_URI is required")),
      problems.join("\n"),
    );
  });
});

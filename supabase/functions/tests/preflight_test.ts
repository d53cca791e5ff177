// `deno task preflight`, run as `deno task` runs it: a process in the project's directory, here a
// temporary one holding supabase/functions/.env and supabase/.temp/project-ref (as `supabase link`
// leaves it), with the project's JWKS served on loopback. Each check gets one bad value and must name
// it in exactly one line; the good configuration must pass and print the Meta App Dashboard's values.
import assert from "node:assert/strict";

const SCRIPT = new URL("../../../scripts/preflight.ts", import.meta.url);
const CONFIG = new URL("../../../deno.json", import.meta.url);
const REF = "abcdefghijklmnopqrst";
const PROJECT = `https://${REF}.supabase.co`;

const hex = (bytes: number) =>
  Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (b) => b.toString(16).padStart(2, "0")).join("");
const base64Key = (bytes = 32) => btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(bytes))));

// Random for each run, so that finding one in the output cannot be a coincidence.
const APP_SECRET = hex(16);
const IG_APP_SECRET = hex(16);
const VERIFY_TOKEN = hex(24);
const [KEY_1, KEY_2] = [base64Key(), base64Key()];

const GOOD: Record<string, string> = {
  INSTAGRAM_APP_ID: "1234567890",
  INSTAGRAM_APP_SECRET: APP_SECRET,
  INSTAGRAM_REDIRECT_URI: `${PROJECT}/functions/v1/instagram-callback`,
  INSTAGRAM_TOKEN_ENCRYPTION_KEYS: `k2:${KEY_2},k1:${KEY_1}`,
  INSTAGRAM_WEBHOOK_VERIFY_TOKEN: VERIFY_TOKEN,
  INSTAGRAM_FRONTEND_REDIRECT_URI: "https://dashboard.example.com/settings/instagram",
  INSTAGRAM_ALLOWED_ORIGINS: "https://dashboard.example.com",
  INSTAGRAM_CONFIG_ID: "987654321",
};
const CALLBACK = `${PROJECT}/functions/v1/instagram-callback`;
/** The Instagram Login app alone (no Facebook app, so no Facebook Login configuration either). */
const IG_ONLY: Record<string, string | undefined> = {
  ...GOOD,
  INSTAGRAM_APP_ID: undefined,
  INSTAGRAM_APP_SECRET: undefined,
  INSTAGRAM_CONFIG_ID: undefined,
  INSTAGRAM_LOGIN_APP_ID: "1122334455",
  INSTAGRAM_LOGIN_APP_SECRET: IG_APP_SECRET,
};
const BOTH: Record<string, string | undefined> = {
  ...GOOD,
  INSTAGRAM_LOGIN_APP_ID: IG_ONLY.INSTAGRAM_LOGIN_APP_ID,
  INSTAGRAM_LOGIN_APP_SECRET: IG_APP_SECRET,
};
/** The Facebook app's block and the Instagram app's, as printed (each line trimmed). */
const FACEBOOK_LINES = [
  "Meta App Dashboard, the Facebook Login app (INSTAGRAM_APP_ID):",
  `Valid OAuth Redirect URI    ${CALLBACK}`,
  `Deauthorize callback URL    ${CALLBACK}/deauthorize`,
  `Data Deletion Request URL   ${CALLBACK}/data-deletion`,
];
const INSTAGRAM_LINES = [
  "Meta App Dashboard, the Instagram Login app (INSTAGRAM_LOGIN_APP_ID):",
  `OAuth redirect URI          ${CALLBACK}`,
  `Deauthorize callback URL    ${CALLBACK}/instagram/deauthorize`,
  `Data deletion request URL   ${CALLBACK}/instagram/data-deletion`,
  `Callback URL                ${PROJECT}/functions/v1/instagram-webhook`,
  "Webhook fields              messages, messaging_seen, message_reactions, messaging_postbacks",
];
const printed = (output: string, line: string) => output.split("\n").some((item) => item.trim() === line);

// A project on JWT signing keys publishes its public key (an ES256 key, as new projects get); a
// project still on the legacy JWT secret publishes none.
const { publicKey } = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
  "sign",
  "verify",
]);
const SIGNING_KEY = {
  ...(await crypto.subtle.exportKey("jwk", publicKey)),
  alg: "ES256",
  use: "sig",
  kid: "k",
};

type Jwks = "signing key" | "no key" | "unreachable";
interface Run {
  /** The variables written to supabase/functions/.env; undefined leaves one out. */
  vars?: Record<string, string | undefined>;
  args?: string[];
  jwks?: Jwks;
  /** What supabase/.temp/project-ref holds; null: never linked. */
  linked?: string | null;
  env?: Record<string, string>;
}

/** Runs preflight in a fresh project directory; its output, exit code and problem lines. */
async function preflight({ vars = GOOD, args = [], jwks = "signing key", linked = REF, env = {} }: Run = {}) {
  const dir = await Deno.makeTempDir({ prefix: "preflight_test_" });
  await Deno.mkdir(`${dir}/supabase/functions`, { recursive: true });
  const lines = Object.entries(vars).filter(([, value]) => value !== undefined);
  await Deno.writeTextFile(`${dir}/supabase/functions/.env`, lines.map(([n, v]) => `${n}=${v}\n`).join(""));
  if (linked !== null) {
    await Deno.mkdir(`${dir}/supabase/.temp`);
    await Deno.writeTextFile(`${dir}/supabase/.temp/project-ref`, `${linked}\n`); // read trimmed, as the CLI reads it
  }
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (request) =>
      new URL(request.url).pathname === "/auth/v1/.well-known/jwks.json"
        ? Response.json({ keys: jwks === "signing key" ? [SIGNING_KEY] : [] })
        : new Response("Not found", { status: 404 }),
  );
  if (jwks === "unreachable") await server.shutdown(); // its port now refuses connections
  try {
    const result = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-read",
        "--allow-env",
        "--allow-net",
        `--config=${CONFIG.pathname}`,
        SCRIPT.pathname,
        ...args,
      ],
      cwd: dir,
      // Only what we give it: a SUPABASE_URL in the shell running the suite must not count.
      clearEnv: true,
      env: {
        ...pick(Deno.env.toObject(), ["HOME", "PATH", "DENO_DIR", "TMPDIR"]),
        NO_COLOR: "1",
        PREFLIGHT_JWKS_URL: `http://127.0.0.1:${server.addr.port}/auth/v1/.well-known/jwks.json`,
        ...env,
      },
    }).output();
    const output = new TextDecoder().decode(result.stdout) + new TextDecoder().decode(result.stderr);
    const problems = output.split("\n").filter((line) => line.startsWith("problem: "))
      .map((line) => line.slice("problem: ".length));
    return { code: result.code, output, problems };
  } finally {
    if (jwks !== "unreachable") await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
}

/** Exactly one problem, matching `expected`, and a non-zero exit. */
function assertOneProblem(run: Awaited<ReturnType<typeof preflight>>, expected: RegExp) {
  assert.equal(run.problems.length, 1, run.output);
  assert.match(run.problems[0], expected);
  assert.equal(run.code, 1, run.output);
  assert.match(run.output, /^1 problem: fix, then run deno task preflight again\.$/m);
}

Deno.test("preflight: a good configuration passes and prints the Meta App Dashboard's values", async () => {
  const run = await preflight();
  assert.equal(run.code, 0, run.output);
  assert.deepEqual(run.problems, []);
  // instagram-callback/index.ts: GET /, POST /deauthorize, POST /data-deletion; instagram-webhook: /.
  for (
    const line of [
      ...FACEBOOK_LINES,
      `Webhooks callback URL       ${PROJECT}/functions/v1/instagram-webhook`,
      "Verify token                the value of INSTAGRAM_WEBHOOK_VERIFY_TOKEN in supabase/functions/.env",
    ]
  ) {
    assert.ok(printed(run.output, line), `${line}\n${run.output}`);
  }
  // The Facebook app alone: nothing to paste into an Instagram app.
  assert.ok(!printed(run.output, INSTAGRAM_LINES[0]), run.output);
  assert.match(run.output, /for project abcdefghijklmnopqrst \(from supabase link\)/);
  assert.match(run.output, /^JWKS: 1 signing key \(ES256\) at http:\/\/127\.0\.0\.1:\d+\//m);
  assert.match(
    run.output,
    /^All checks passed\. Next: supabase secrets set --env-file supabase\/functions\/\.env$/m,
  );
});

Deno.test("preflight: the Instagram Login app alone passes and prints its business login settings", async () => {
  const run = await preflight({ vars: IG_ONLY });
  assert.equal(run.code, 0, run.output);
  assert.deepEqual(run.problems, []);
  for (const line of INSTAGRAM_LINES) assert.ok(printed(run.output, line), `${line}\n${run.output}`);
  // No Facebook app: neither its dashboard values nor its Login configuration (INSTAGRAM_CONFIG_ID).
  assert.ok(!printed(run.output, FACEBOOK_LINES[0]), run.output);
  assert.doesNotMatch(run.output, /INSTAGRAM_CONFIG_ID/);
});

Deno.test("preflight: both apps print both blocks; one field list as configured", async () => {
  const run = await preflight({
    vars: { ...BOTH, INSTAGRAM_LOGIN_WEBHOOK_FIELDS: "messages,messaging_seen" },
  });
  assert.equal(run.code, 0, run.output);
  for (const line of [...FACEBOOK_LINES, ...INSTAGRAM_LINES.slice(0, -1)]) {
    assert.ok(printed(run.output, line), `${line}\n${run.output}`);
  }
  assert.ok(printed(run.output, "Webhook fields              messages, messaging_seen"), run.output);
});

Deno.test("preflight: a half-configured app fails, naming its missing variable", async () => {
  assertOneProblem(
    await preflight({ vars: { ...IG_ONLY, INSTAGRAM_LOGIN_APP_SECRET: undefined } }),
    /^INSTAGRAM_LOGIN_APP_SECRET is required: INSTAGRAM_LOGIN_APP_ID is set/,
  );
  assertOneProblem(
    await preflight({ vars: { ...BOTH, INSTAGRAM_LOGIN_APP_ID: undefined } }),
    /^INSTAGRAM_LOGIN_APP_ID is required: INSTAGRAM_LOGIN_APP_SECRET is set/,
  );
  // The Facebook app half there beside a complete Instagram app: still a mistake, named.
  assertOneProblem(
    await preflight({ vars: { ...IG_ONLY, INSTAGRAM_APP_SECRET: APP_SECRET } }),
    /^INSTAGRAM_APP_ID is required: INSTAGRAM_APP_SECRET is set/,
  );
  // Neither app: a line naming what to set (config.ts's receiver part adds its own about the secret).
  const neither = await preflight({
    vars: { ...IG_ONLY, INSTAGRAM_LOGIN_APP_ID: undefined, INSTAGRAM_LOGIN_APP_SECRET: undefined },
  });
  assert.equal(neither.code, 1, neither.output);
  assert.ok(
    neither.problems.some((line) =>
      /^INSTAGRAM_APP_ID is required: .*INSTAGRAM_LOGIN_APP_ID and INSTAGRAM_LOGIN_APP_SECRET/.test(line)
    ),
    neither.output,
  );
});

Deno.test("preflight: INSTAGRAM_LOGIN_REDIRECT_URI, when set, must be this project's instagram-callback", async () => {
  const same = await preflight({ vars: { ...IG_ONLY, INSTAGRAM_LOGIN_REDIRECT_URI: CALLBACK } });
  assert.equal(same.code, 0, same.output);
  assertOneProblem(
    await preflight({ vars: { ...IG_ONLY, INSTAGRAM_LOGIN_REDIRECT_URI: `${CALLBACK}/instagram` } }),
    new RegExp(`^INSTAGRAM_LOGIN_REDIRECT_URI must be ${CALLBACK.replaceAll(".", "\\.")}, `),
  );
  // Unset, it is INSTAGRAM_REDIRECT_URI, checked as before.
  assertOneProblem(
    await preflight({
      vars: {
        ...IG_ONLY,
        INSTAGRAM_REDIRECT_URI: "https://zyxwvutsrqponmlkjihg.supabase.co/functions/v1/instagram-callback",
      },
    }),
    /^INSTAGRAM_REDIRECT_URI must be /,
  );
});

Deno.test("preflight: every variable is validated as the functions validate it, optional ones too", async () => {
  assertOneProblem(
    await preflight({ vars: { ...GOOD, INSTAGRAM_APP_ID: "12ab" } }),
    /^INSTAGRAM_APP_ID must be the numeric Meta app id \(App settings > Basic\)$/,
  );
  assertOneProblem(
    await preflight({ vars: { ...GOOD, INSTAGRAM_STATE_TTL_SECONDS: "5" } }),
    /^INSTAGRAM_STATE_TTL_SECONDS must be a whole number of seconds from 60 to 3600$/,
  );
});

Deno.test("preflight: INSTAGRAM_REDIRECT_URI must be this project's instagram-callback, exactly", async () => {
  const expected = new RegExp(
    `^INSTAGRAM_REDIRECT_URI must be ${PROJECT.replaceAll(".", "\\.")}/functions/v1/instagram-callback, `,
  );
  // A typo in the function's name, and another project's callback.
  assertOneProblem(
    await preflight({
      vars: { ...GOOD, INSTAGRAM_REDIRECT_URI: `${PROJECT}/functions/v1/instagram-calback` },
    }),
    expected,
  );
  assertOneProblem(
    await preflight({
      vars: {
        ...GOOD,
        INSTAGRAM_REDIRECT_URI: "https://zyxwvutsrqponmlkjihg.supabase.co/functions/v1/instagram-callback",
      },
    }),
    expected,
  );
});

Deno.test("preflight: a browser dashboard, or JSON answers chosen with --json-answers", async () => {
  assertOneProblem(
    await preflight({ vars: { ...GOOD, INSTAGRAM_FRONTEND_REDIRECT_URI: undefined } }),
    /^INSTAGRAM_FRONTEND_REDIRECT_URI is not set: after Allow the doctor would land on the callback's JSON\..*--json-answers$/,
  );
  assertOneProblem(
    await preflight({ vars: { ...GOOD, INSTAGRAM_ALLOWED_ORIGINS: "https://other.example.com" } }),
    /^INSTAGRAM_ALLOWED_ORIGINS does not list https:\/\/dashboard\.example\.com, the origin of INSTAGRAM_FRONTEND_REDIRECT_URI: .*CORS/,
  );
  const json = await preflight({
    vars: { ...GOOD, INSTAGRAM_FRONTEND_REDIRECT_URI: undefined, INSTAGRAM_ALLOWED_ORIGINS: undefined },
    args: ["--json-answers"],
  });
  assert.equal(json.code, 0, json.output);
  assertOneProblem(
    await preflight({ args: ["--json-answers"] }),
    /^INSTAGRAM_FRONTEND_REDIRECT_URI is set, but --json-answers was given/,
  );
});

Deno.test("preflight: the webhook's verify token must be set", async () => {
  assertOneProblem(
    await preflight({ vars: { ...GOOD, INSTAGRAM_WEBHOOK_VERIFY_TOKEN: undefined } }),
    /^INSTAGRAM_WEBHOOK_VERIFY_TOKEN is required$/,
  );
});

Deno.test("preflight: INSTAGRAM_CONFIG_ID is required unless --scope-login", async () => {
  assertOneProblem(
    await preflight({ vars: { ...GOOD, INSTAGRAM_CONFIG_ID: undefined } }),
    /^INSTAGRAM_CONFIG_ID is not set: Facebook Login for Business needs the id of a configuration .*--scope-login/,
  );
  const scopes = await preflight({
    vars: { ...GOOD, INSTAGRAM_CONFIG_ID: undefined },
    args: ["--scope-login"],
  });
  assert.equal(scopes.code, 0, scopes.output);
  assertOneProblem(
    await preflight({ args: ["--scope-login"] }),
    /^INSTAGRAM_CONFIG_ID is set, but --scope-login was given/,
  );
});

Deno.test("preflight: the token key ring must be well formed", async () => {
  assertOneProblem(
    await preflight({
      vars: { ...GOOD, INSTAGRAM_TOKEN_ENCRYPTION_KEYS: `k2:${KEY_2},k1:${base64Key(16)}` },
    }),
    /^INSTAGRAM_TOKEN_ENCRYPTION_KEYS must give each key as 32 random bytes in base64 .*: the key of k1 is not$/,
  );
});

Deno.test("preflight: the project's JWKS must hold a signing key; one that cannot be reached is not checked", async () => {
  assertOneProblem(
    await preflight({ jwks: "no key" }),
    /^the project's JWKS holds no signing key: .*legacy JWT secret.*"JWT Signing Keys"/,
  );
  const unreachable = await preflight({ jwks: "unreachable" });
  assert.equal(unreachable.code, 0, unreachable.output);
  assert.match(
    unreachable.output,
    /^JWKS not checked: http:\/\/127\.0\.0\.1:\d+\/\S+ could not be reached \(/m,
  );
});

Deno.test("preflight: the project ref comes from supabase link, else SUPABASE_URL; both must agree", async () => {
  const fromUrl = await preflight({ linked: null, env: { SUPABASE_URL: PROJECT } });
  assert.equal(fromUrl.code, 0, fromUrl.output);
  assert.match(fromUrl.output, /for project abcdefghijklmnopqrst \(SUPABASE_URL's\)/);
  assertOneProblem(
    await preflight({ linked: null }),
    /^no project ref: run supabase link --project-ref <project-ref>/,
  );
  assertOneProblem(
    await preflight({ env: { SUPABASE_URL: "https://zyxwvutsrqponmlkjihg.supabase.co" } }),
    /^SUPABASE_URL is project zyxwvutsrqponmlkjihg's, but supabase link names abcdefghijklmnopqrst/,
  );
});

Deno.test("preflight: an unknown option is a usage mistake (exit 2), not a stack trace", async () => {
  const run = await preflight({ args: ["--jsonanswers"] });
  assert.equal(run.code, 2, run.output);
  assert.match(
    run.output,
    /^deno task preflight: Unknown option '--jsonanswers'\nusage: deno task preflight /m,
  );
  assert.doesNotMatch(run.output, /\n\s+at /);
});

Deno.test("preflight: the output holds no secret value, good or bad", async () => {
  const good = await preflight({ vars: BOTH });
  // Each secret refused, and so named in a problem line: its value must still not be printed.
  const [badSecret, badToken, badKey, badIgSecret] = [
    `bad ${hex(5)}`,
    `vt-${hex(5)}`,
    base64Key(16),
    `ig ${hex(5)}`,
  ];
  const refused = await preflight({
    vars: {
      ...BOTH,
      INSTAGRAM_APP_SECRET: badSecret,
      INSTAGRAM_LOGIN_APP_SECRET: badIgSecret,
      INSTAGRAM_WEBHOOK_VERIFY_TOKEN: badToken,
      INSTAGRAM_TOKEN_ENCRYPTION_KEYS: `k2:${KEY_2},k1:${badKey}`,
    },
    jwks: "no key",
  });
  assert.equal(good.code, 0, good.output);
  assert.equal(refused.code, 1, refused.output);
  for (
    const name of [
      "INSTAGRAM_APP_SECRET",
      "INSTAGRAM_LOGIN_APP_SECRET",
      "INSTAGRAM_WEBHOOK_VERIFY_TOKEN",
      "INSTAGRAM_TOKEN_ENCRYPTION_KEYS",
    ]
  ) {
    assert.ok(refused.problems.some((line) => line.startsWith(`${name} must`)), `${name}\n${refused.output}`);
  }
  for (const run of [good, refused]) {
    const secrets = [
      APP_SECRET,
      IG_APP_SECRET,
      VERIFY_TOKEN,
      KEY_1,
      KEY_2,
      badSecret,
      badToken,
      badKey,
      badIgSecret,
    ];
    for (const secret of secrets) {
      assert.ok(!run.output.includes(secret), `a secret was printed:\n${run.output}`);
    }
  }
});

function pick(env: Record<string, string>, names: string[]): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter(([name]) => names.includes(name)));
}

Deno.test("preflight: a value only in the shell's environment is a problem: secrets set uploads the file alone", async () => {
  const run = await preflight({
    vars: { ...GOOD, INSTAGRAM_WEBHOOK_VERIFY_TOKEN: undefined },
    env: { INSTAGRAM_WEBHOOK_VERIFY_TOKEN: VERIFY_TOKEN },
  });
  assertOneProblem(
    run,
    /^INSTAGRAM_WEBHOOK_VERIFY_TOKEN is set only in your environment: secrets set --env-file uploads/,
  );
  assert.ok(!run.output.includes(VERIFY_TOKEN), "and the value is not printed");
});

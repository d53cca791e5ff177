// Who may act as a doctor, without a stack: requireDoctor behind a Hono app, with session tokens signed
// here. A project still on the legacy JWT secret (tokens without `kid`) or with an empty JWKS refuses
// every doctor; the refusal's log line must say why and what to do. INSTAGRAM_DOCTOR_CLAIM narrows
// "doctor" to an app_metadata value (403 not_a_doctor otherwise); unset, any signed-in user counts.
import assert from "node:assert/strict";
import { Hono } from "hono";
import { SignJWT } from "jose";
import { createJwtIssuer } from "../../../scripts/lib/jwt_issuer.ts";
import { bootFailure } from "../../../scripts/lib/function_process.ts";
import { ConfigError, loadConfig, parseDoctorClaim } from "../_shared/config.ts";
import { ERRORS } from "../_shared/errors.ts";
import { requireDoctor } from "../_shared/http/doctor_auth.ts";
import { asAppError, jsonError } from "../_shared/http/error_response.ts";
import { type AppEnv, requestContext } from "../_shared/http/request_context.ts";

const issuer = await createJwtIssuer();
const DOCTOR = "7d6f0a4e-2f1b-4c55-9d7a-0b8e3f2a1c90";
const base = { SUPABASE_URL: "https://project.supabase.co", SUPABASE_JWKS: JSON.stringify(issuer.jwks) };

/** The log lines written while `body` runs (console.log and console.error), parsed. */
async function capturingLogs<T>(body: () => Promise<T>): Promise<{ result: T; lines: any[] }> {
  const lines: any[] = [];
  const [log, error] = [console.log, console.error];
  console.log = console.error = (line: string) => lines.push(JSON.parse(line));
  try {
    return { result: await body(), lines };
  } finally {
    [console.log, console.error] = [log, error];
  }
}

async function call(env: Record<string, string>, token: string) {
  const app = new Hono<AppEnv>();
  app.use("*", requestContext("instagram-connect"));
  app.get("/", requireDoctor(loadConfig(["sessions"], env)), (c) => c.json({ doctor: c.var.doctorId }));
  app.onError((error, c) => jsonError(c, asAppError(c, error)));
  const { result: response, lines } = await capturingLogs(() =>
    Promise.resolve(app.request("/", { headers: { authorization: `Bearer ${token}` } }))
  );
  const body = await response.json();
  return {
    status: response.status,
    body,
    refusal: lines.find((line) => line.event === "auth_refused"),
    lines,
  };
}

/** A token as a project on the legacy JWT secret issues it: HS256, no `kid`. */
function legacyToken(claims: Record<string, unknown>) {
  return new SignJWT({ role: "authenticated", aud: "authenticated", sub: DOCTOR, ...claims })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setIssuedAt()
    .setExpirationTime("1h")
    .sign(new TextEncoder().encode("super-secret-jwt-token-with-at-least-32-characters-long"));
}

Deno.test("a legacy HS256 session (no kid): 401 unauthorized, and a log line naming the cause", async () => {
  const token = await legacyToken({});
  const { status, body, refusal, lines } = await call(base, token);
  assert.equal(status, 401);
  assert.equal(body.error.code, "unauthorized");
  assert.equal(refusal.level, "warn");
  assert.equal(refusal.reason, "legacy_jwt");
  assert.match(refusal.fix, /move the project to JWT signing keys/);
  assert.equal(lines.filter((line) => line.event === "auth_refused").length, 1, "one line per refusal");
  assert.ok(!JSON.stringify(lines).includes(token.split(".")[2]), "the token is never logged");

  // The legacy anon key sent as a session is the caller's mistake, not the project's: no such cause.
  const anon = await call(base, await legacyToken({ role: "anon", sub: undefined }));
  assert.equal(anon.status, 401);
  assert.equal(anon.refusal.reason, "invalid_jwt_401");
  assert.equal(anon.refusal.fix, undefined);
});

Deno.test("an empty JWKS: 401, and a log line naming it, inline or at the project's endpoint", async () => {
  const token = await issuer.sign({ sub: DOCTOR });
  const inline = await call({ ...base, SUPABASE_JWKS: '{"keys":[]}' }, token);
  assert.equal(inline.status, 401);
  assert.equal(inline.refusal.reason, "jwks_empty");
  assert.match(inline.refusal.fix, /JWKS has no keys.*move the project to JWT signing keys/);

  // The endpoint a project's SUPABASE_JWKS_URL names, on loopback, answering no keys.
  let reads = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => {
    reads++;
    return Response.json({ keys: [] });
  });
  try {
    const env = {
      SUPABASE_URL: base.SUPABASE_URL,
      SUPABASE_JWKS_URL: `http://127.0.0.1:${server.addr.port}/jwks`,
    };
    const remote = await call(env, token);
    assert.equal(remote.status, 401);
    assert.equal(remote.refusal.reason, "jwks_empty");
    // A JWKS that does hold keys (another project's): a plain refusal, no platform cause.
    const other = await call(base, await (await createJwtIssuer()).sign({ sub: DOCTOR }));
    assert.equal(other.refusal.reason, "invalid_jwt_401");
    assert.ok(reads >= 1);
  } finally {
    await server.shutdown();
  }
});

Deno.test("default: any signed-in user counts as a doctor", async () => {
  const { status, body } = await call(base, await issuer.sign({ sub: DOCTOR }));
  assert.equal(status, 200);
  assert.equal(body.doctor, DOCTOR);
  assert.equal(loadConfig(["sessions"], base).sessions.doctorClaim, undefined);
});

Deno.test("INSTAGRAM_DOCTOR_CLAIM: a match passes; a mismatch or a missing claim is 403 not_a_doctor", async () => {
  const env = { ...base, INSTAGRAM_DOCTOR_CLAIM: "app_metadata.role=doctor" };
  const as = async (app_metadata: unknown) =>
    await call(env, await issuer.sign({ sub: DOCTOR, app_metadata }));

  for (const metadata of [{ role: "doctor" }, { role: ["admin", "doctor"] }]) {
    assert.equal((await as(metadata)).status, 200, JSON.stringify(metadata));
  }
  for (
    const metadata of [{ role: "patient" }, {}, undefined, { role: ["patient"] }, { role: { doctor: 1 } }]
  ) {
    const { status, body, refusal } = await as(metadata);
    assert.equal(status, 403, JSON.stringify(metadata));
    assert.equal(body.error.code, "not_a_doctor");
    assert.equal(body.error.message, ERRORS.not_a_doctor[1]);
    assert.equal(refusal.reason, "doctor_claim");
  }
  // user_metadata is the user's own to edit: it never counts, even with the same key and value.
  const own = await call(env, await issuer.sign({ sub: DOCTOR, user_metadata: { role: "doctor" } }));
  assert.equal(own.status, 403);

  // Nested keys, and a boolean written as it reads.
  const nested = { ...base, INSTAGRAM_DOCTOR_CLAIM: "app_metadata.practice.is_doctor=true" };
  const yes = await call(
    nested,
    await issuer.sign({ sub: DOCTOR, app_metadata: { practice: { is_doctor: true } } }),
  );
  assert.equal(yes.status, 200);
  const no = await call(
    nested,
    await issuer.sign({ sub: DOCTOR, app_metadata: { practice: { is_doctor: false } } }),
  );
  assert.equal(no.status, 403);
});

Deno.test("INSTAGRAM_DOCTOR_CLAIM: the syntax, and a malformed value refused at start-up in one line", async () => {
  assert.deepEqual(parseDoctorClaim("app_metadata.role=doctor"), { path: ["role"], value: "doctor" });
  assert.deepEqual(parseDoctorClaim("app_metadata.a.b=x=y"), { path: ["a", "b"], value: "x=y" });
  const message =
    "INSTAGRAM_DOCTOR_CLAIM must be app_metadata.<key>=<value>, such as app_metadata.role=doctor (keys of letters, digits, _ or -, dot-separated, up to 4 deep; a value without spaces)";
  for (
    const bad of [
      "role=doctor",
      "user_metadata.role=doctor",
      "app_metadata=doctor",
      "app_metadata.role",
      "app_metadata.role=",
      "app_metadata.role=two words",
      "app_metadata.a.b.c.d.e=x",
    ]
  ) {
    assert.throws(() => loadConfig(["sessions"], { ...base, INSTAGRAM_DOCTOR_CLAIM: bad }), (error) => {
      assert.ok(error instanceof ConfigError);
      assert.deepEqual(error.problems, [message], bad);
      return true;
    });
  }

  const { code, output } = await bootFailure("instagram-connect", {
    INSTAGRAM_APP_ID: "1234567890",
    INSTAGRAM_APP_SECRET: "a-very-secret-app-secret-value-123",
    INSTAGRAM_REDIRECT_URI: "https://project.supabase.co/functions/v1/instagram-callback",
    INSTAGRAM_TOKEN_ENCRYPTION_KEY: "ZGV2LW9ubHkta2V5LWRvLW5vdC11c2UtaW4tcHJvZCE=",
    INSTAGRAM_WEBHOOK_VERIFY_TOKEN: "a-verify-token-for-these-tests",
    SUPABASE_SECRET_KEYS: JSON.stringify({ default: "sb_secret_value_never_printed_0123" }),
    ...base,
    INSTAGRAM_DOCTOR_CLAIM: "user_metadata.role=doctor",
  });
  assert.equal(code, 1);
  assert.deepEqual(output.trim().split("\n"), [
    `instagram-connect: configuration: ${message}`,
    "instagram-connect: cannot serve until the variables above are fixed (see .env.example).",
  ]);
});

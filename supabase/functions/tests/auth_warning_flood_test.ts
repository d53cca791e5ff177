// The legacy-JWT diagnosis reads a token whose signature failed, so anyone can trigger it:
// a forged, unsigned "legacy" token must not write a warning per request telling the operator to move to
// JWT signing keys (the project may be on them already): one warning per interval, info lines otherwise.
import assert from "node:assert/strict";
import { Hono } from "hono";
import { createJwtIssuer } from "../../../scripts/lib/jwt_issuer.ts";
import { loadConfig } from "../_shared/config.ts";
import { requireDoctor } from "../_shared/http/doctor_auth.ts";
import { asAppError, jsonError } from "../_shared/http/error_response.ts";
import { type AppEnv, requestContext } from "../_shared/http/request_context.ts";

const b64 = (value: unknown) =>
  btoa(JSON.stringify(value)).replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");

Deno.test("a run of forged kid-less tokens does not write a warn line per request", async () => {
  const issuer = await createJwtIssuer(); // a project on signing keys: its JWKS holds a signing key
  const env = { SUPABASE_URL: "https://project.supabase.co", SUPABASE_JWKS: JSON.stringify(issuer.jwks) };
  const app = new Hono<AppEnv>();
  app.use("*", requestContext("instagram-connect"));
  app.get("/", requireDoctor(loadConfig(["sessions"], env)), (c) => c.json({ doctor: c.var.doctorId }));
  app.onError((error, c) => jsonError(c, asAppError(c, error)));

  // No signature at all: nothing Supabase issued.
  const forged = `${b64({ alg: "HS256" })}.${b64({ role: "authenticated" })}.x`;
  const lines: any[] = [];
  const [log, error] = [console.log, console.error];
  console.log = console.error = (line: string) => lines.push(JSON.parse(line));
  try {
    for (let i = 0; i < 20; i++) {
      const response = await app.request("/", { headers: { authorization: `Bearer ${forged}` } });
      assert.equal(response.status, 401);
      await response.body?.cancel();
    }
  } finally {
    [console.log, console.error] = [log, error];
  }
  const warnings = lines.filter((line) => line.event === "auth_refused" && line.level === "warn");
  assert.ok(
    warnings.length <= 1,
    `${warnings.length} warn lines "${
      warnings[0]?.reason
    }" from 20 forged, unsigned tokens on a project with signing keys`,
  );
});

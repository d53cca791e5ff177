// The demo dashboard's "Run maintenance now": one run of the real instagram-maintenance, as the schedule
// makes it (README, "Keeping links alive"), so a link the sandbox has just broken is seen the way its
// doctor sees it after the next scheduled run. Local only, like the rest of /demo/sandbox/:
//   POST /demo/sandbox/run-maintenance  {}  -> {sandbox: true, action: "run-maintenance", summary}
// instagram-maintenance accepts only the project's secret key, and a browser must never hold that key:
// the browser proves it is a signed-in doctor (a session JWT, verified here against the stack's JWKS, as
// the gateway verifies it), and this server makes the call with the secret key the function is
// configured to accept (INSTAGRAM_MAINTENANCE_KEY_NAME of SUPABASE_SECRET_KEYS; LOCAL_SECRET_KEY unless a
// test changes them). The run checks every link, not only the caller's, as a scheduled run does: the
// demo holds a handful. The function's summary is answered as is; a refusal is passed back with its status.
import { createLocalJWKSet, jwtVerify } from "jose";
import type { LocalStack } from "./local_stack.ts";
import { loadConfig } from "../../supabase/functions/_shared/config.ts";
import type { ErrorCode } from "../../supabase/functions/_shared/errors.ts";

export const RUN_MAINTENANCE = "run-maintenance";

export async function runMaintenanceControl(
  stack: LocalStack,
  request: Request,
  fail: (code: ErrorCode) => Response,
): Promise<Response> {
  if (!await isDoctor(stack, request)) return fail("unauthorized");
  const { secretKeys, keyName } = loadConfig(["maintenance"], stack.env).maintenance;
  const answer = await fetch(stack.functionUrl("instagram-maintenance"), {
    method: "POST",
    headers: { apikey: secretKeys[keyName], "content-type": "application/json" },
    body: "{}",
  });
  const result = await answer.json().catch(() => null);
  if (!answer.ok) {
    return Response.json(result ?? { error: { code: "internal_error" } }, { status: answer.status });
  }
  return Response.json({ sandbox: true, action: RUN_MAINTENANCE, summary: result });
}

/** A doctor's session: a JWT the stack's Auth signed, for the `authenticated` role, naming a user. */
async function isDoctor(stack: LocalStack, request: Request): Promise<boolean> {
  const bearer = request.headers.get("authorization")?.match(/^Bearer\s+(\S+)$/i)?.[1];
  if (!bearer) return false;
  try {
    const { payload } = await jwtVerify(bearer, createLocalJWKSet(stack.jwt.jwks));
    return payload.role === "authenticated" && typeof payload.sub === "string" && payload.sub !== "";
  } catch {
    return false;
  }
}

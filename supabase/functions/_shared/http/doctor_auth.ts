// Only a signed-in doctor's own session may start, finish or end a link. @supabase/server verifies the
// JWT: withRequiredClaims is the same verification core as withSupabase's `user` mode (signature and
// expiry against the project's JWKS, no network for inline keys), here also checking the audience,
// without loading supabase-js, which these functions do not need. Supabase Auth gives a signed-in user
// role and audience "authenticated" and a UUID subject; the anon and service_role keys are JWTs too
// and must not pass as a doctor, and an anonymous sign-in is not a doctor either.
//
// Like @supabase/server, only JWT signing keys are accepted: never the legacy JWT secret, which can
// mint a token of any role. A project still on it refuses every doctor; so that this is not a mystery,
// the refusal's log line then names the cause (legacy_jwt, jwks_empty) and what to do.
//
// INSTAGRAM_DOCTOR_CLAIM narrows "doctor" to the users whose app_metadata holds a value (a 403
// not_a_doctor for the others); unset, any signed-in user counts.
import { withRequiredClaims } from "@supabase/server/middleware/required-claims";
import { createMiddleware } from "hono/factory";
import type { Config, DoctorClaim, Jwks } from "../config.ts";
import { decodeBase64Url } from "../crypto/base64url.ts";
import { AppError } from "../errors.ts";
import { UUID } from "../ids.ts";
import type { AppEnv } from "./request_context.ts";

type Claims = Record<string, unknown>;

/** What an operator must do when sessions cannot be verified at all (README, Security model). */
const MOVE_TO_SIGNING_KEYS =
  "move the project to JWT signing keys (Supabase docs, JWT Signing Keys; README, Security model)";
const CAUSES = {
  legacy_jwt:
    `a session token without "kid" is signed with the legacy JWT secret, which is not accepted: ${MOVE_TO_SIGNING_KEYS}`,
  jwks_empty: `the project's JWKS has no keys, so no session can be verified: ${MOVE_TO_SIGNING_KEYS}`,
} as const;

/**
 * `claim: false` for the routes a former doctor must still reach: disconnecting ends a link (and its
 * Page token and stored messages) whoever the practice counts as a doctor today.
 */
export function requireDoctor(config: Config<"sessions">, { claim = true }: { claim?: boolean } = {}) {
  // Answers with the verified claims, or @supabase/server's own 401/500 response.
  const verify = withRequiredClaims(
    { jwks: config.sessions.jwks, audience: "authenticated" },
    (_request, context) => Promise.resolve(Response.json(context.jwtClaims)),
  );
  const jwksKeyCount = keyCounter(config.sessions.jwks);
  const doctorClaim = claim ? config.sessions.doctorClaim : undefined;
  const warnings = onceEvery(JWKS_RECHECK_MS);

  return createMiddleware<AppEnv>(async (c, next) => {
    // Only the headers matter, and the body stays unread for the route.
    const answer = await verify(new Request(c.req.url, { headers: c.req.raw.headers }));
    if (!answer.ok) {
      await answer.body?.cancel();
      const cause = await platformCause(c.req.header("authorization"), jwksKeyCount);
      // One line per refused request, never the token. The diagnosis reads a token whose signature
      // failed, so anyone can send one that looks legacy: it is a warning once per interval per instance
      // (all an operator needs), and an info line otherwise, so forged tokens cannot flood the warnings.
      if (cause && warnings.due()) c.var.log.warn("auth_refused", { reason: cause, fix: CAUSES[cause] });
      else c.var.log.info("auth_refused", { reason: cause ?? `invalid_jwt_${answer.status}` });
      throw new AppError("unauthorized");
    }
    const claims: Claims = await answer.json();
    const refused = claimsRefusal(claims);
    if (refused) {
      c.var.log.info("auth_refused", { reason: refused });
      throw new AppError("unauthorized");
    }
    if (doctorClaim && !holdsClaim(claims, doctorClaim)) {
      c.var.log.info("auth_refused", { reason: "doctor_claim" });
      throw new AppError("not_a_doctor");
    }
    c.set("doctorId", String(claims.sub).toLowerCase());
    await next();
  });
}

function claimsRefusal(claims: Claims): string | undefined {
  if (claims.role !== "authenticated") return "role";
  if (typeof claims.sub !== "string" || !UUID.test(claims.sub)) return "subject";
  if (claims.is_anonymous === true) return "anonymous";
}

/**
 * The claim at the rule's path under app_metadata: a string equal to the value, a number or boolean
 * written the same way (app_metadata.is_doctor=true), or a list holding the value.
 */
export function holdsClaim(claims: Claims, rule: DoctorClaim): boolean {
  let node: unknown = claims.app_metadata;
  for (const key of rule.path) {
    if (!node || typeof node !== "object" || Array.isArray(node) || !Object.hasOwn(node, key)) return false;
    node = (node as Record<string, unknown>)[key];
  }
  if (typeof node === "number" || typeof node === "boolean") return String(node) === rule.value;
  return node === rule.value || (Array.isArray(node) && node.includes(rule.value));
}

/**
 * Why a refused session could never have passed, when the project's set-up is the cause: a user token
 * without `kid` (legacy HS256), or a JWKS without keys. The token is read only for this diagnosis,
 * after the signature check failed; nothing of it is trusted or logged. An anon or service_role key
 * sent as a session is the caller's mistake, not the project's, and gets no cause.
 */
async function platformCause(
  authorization: string | undefined,
  jwksKeyCount: () => Promise<number | undefined>,
): Promise<keyof typeof CAUSES | undefined> {
  const token = /^bearer\s+(\S+)$/i.exec(authorization?.trim() ?? "")?.[1];
  const [header, payload] = (token?.split(".") ?? []).map(decodeJson);
  if (!header || !payload) return undefined;
  if (header.kid === undefined && payload.role === "authenticated") return "legacy_jwt";
  if (header.kid !== undefined && (await jwksKeyCount()) === 0) return "jwks_empty";
}

function decodeJson(part: string): Record<string, unknown> | undefined {
  try {
    const value = JSON.parse(new TextDecoder().decode(decodeBase64Url(part)));
    return value && typeof value === "object" && !Array.isArray(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

const JWKS_RECHECK_MS = 5 * 60_000;
const JWKS_TIMEOUT_MS = 3_000;

/**
 * How many keys the JWKS holds (undefined: could not tell). Inline keys are counted as they are; the
 * project's endpoint is read at most once per five minutes per instance, and only after a refusal, so
 * a run of bad tokens costs one request.
 */
function keyCounter(jwks: Jwks): () => Promise<number | undefined> {
  if (!(jwks instanceof URL)) return () => Promise.resolve(jwks.keys.length);
  let checked: { at: number; count: Promise<number | undefined> } | undefined;
  return () => {
    if (!checked || Date.now() - checked.at > JWKS_RECHECK_MS) {
      checked = {
        at: Date.now(),
        count: fetch(jwks, { signal: AbortSignal.timeout(JWKS_TIMEOUT_MS) })
          .then((response) => response.ok ? response.json() : undefined)
          .then((body) => Array.isArray(body?.keys) ? body.keys.length : undefined)
          .catch(() => undefined),
      };
    }
    return checked.count;
  };
}

/** True at most once per `ms` (per instance). */
function onceEvery(ms: number): { due(): boolean } {
  let last = -Infinity;
  return {
    due() {
      if (Date.now() - last < ms) return false;
      last = Date.now();
      return true;
    },
  };
}

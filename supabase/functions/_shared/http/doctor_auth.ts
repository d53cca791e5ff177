// Only a signed-in doctor's own session may start, finish or end a link. @supabase/server verifies the
// JWT: withRequiredClaims is the same verification core as withSupabase's `user` mode (signature and
// expiry against the project's JWKS, no network for inline keys), here also checking the audience,
// without loading supabase-js, which these functions do not need. Supabase Auth gives a signed-in user
// role and audience "authenticated" and a UUID subject; the anon and service_role keys are JWTs too
// and must not pass as a doctor, and an anonymous sign-in is not a doctor either.
import { withRequiredClaims } from "@supabase/server/middleware/required-claims";
import { createMiddleware } from "hono/factory";
import type { Config } from "../config.ts";
import { AppError } from "../errors.ts";
import { UUID } from "../ids.ts";
import type { AppEnv } from "./request_context.ts";

type Claims = Record<string, unknown>;

export function requireDoctor(config: Config<"sessions">) {
  // Answers with the verified claims, or @supabase/server's own 401/500 response.
  const verify = withRequiredClaims(
    { jwks: config.sessions.jwks, audience: "authenticated" },
    (_request, context) => Promise.resolve(Response.json(context.jwtClaims)),
  );

  return createMiddleware<AppEnv>(async (c, next) => {
    // Only the headers matter, and the body stays unread for the route.
    const answer = await verify(new Request(c.req.url, { headers: c.req.raw.headers }));
    const claims: Claims | undefined = answer.ok ? await answer.json() : undefined;
    const refused = claims ? claimsRefusal(claims) : `invalid_jwt_${answer.status}`;
    if (refused) {
      c.var.log.info("auth_refused", { reason: refused });
      throw new AppError("unauthorized");
    }
    c.set("doctorId", String(claims!.sub).toLowerCase());
    await next();
  });
}

function claimsRefusal(claims: Claims): string | undefined {
  if (claims.role !== "authenticated") return "role";
  if (typeof claims.sub !== "string" || !UUID.test(claims.sub)) return "subject";
  if (claims.is_anonymous === true) return "anonymous";
}

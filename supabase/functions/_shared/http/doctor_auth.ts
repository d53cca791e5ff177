// Only a signed-in doctor's own session may start or finish a link. @supabase/server's verifyAuth
// checks the JWT's signature and expiry against the project's JWKS (no network); it does not look at
// the claims, so we do: Supabase Auth gives a signed-in user role and audience "authenticated" and a
// UUID subject. The anon and service_role keys are JWTs too and must not pass as a doctor, and an
// anonymous sign-in is not a doctor either.
import { verifyAuth } from "@supabase/server/core";
import { createMiddleware } from "hono/factory";
import type { Config } from "../config.ts";
import { AppError } from "../errors.ts";
import { UUID } from "../ids.ts";
import type { AppEnv } from "./request_context.ts";

export function requireDoctor(config: Config) {
  return createMiddleware<AppEnv>(async (c, next) => {
    const { data } = await verifyAuth(c.req.raw, { auth: "user", env: config.supabase });
    const refused = data?.jwtClaims ? claimsRefusal(data.jwtClaims) : "invalid_jwt";
    if (refused) {
      c.var.log.info("auth_refused", { reason: refused });
      throw new AppError("unauthorized");
    }
    c.set("doctorId", String(data!.jwtClaims!.sub).toLowerCase());
    await next();
  });
}

function claimsRefusal(claims: Record<string, unknown>): string | undefined {
  const audience = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  if (claims.role !== "authenticated") return "role";
  if (!audience.includes("authenticated")) return "audience";
  if (typeof claims.sub !== "string" || !UUID.test(claims.sub)) return "subject";
  if (claims.is_anonymous === true) return "anonymous";
}

// Only the project's secret key may run scheduled work. @supabase/server's `secret` auth mode checks
// it (its README's cron example: the key in the `apikey` header, compared in constant time against
// the `default` key of SUPABASE_SECRET_KEYS, or a named one with `secret:<name>`), so this is that
// check, not our own comparison. A doctor's JWT, the publishable key, another secret key or nothing:
// 401, and the log says which (never the value).
import { extractCredentials, verifyCredentials } from "@supabase/server/core";
import { createMiddleware } from "hono/factory";
import type { Config } from "../config.ts";
import { AppError } from "../errors.ts";
import type { AppEnv } from "./request_context.ts";

export function requireSecretKey(config: Config<"maintenance" | "database">) {
  const mode: "secret" | `secret:${string}` = config.maintenance.keyName === "default"
    ? "secret"
    : `secret:${config.maintenance.keyName}`;
  // Only the keys matter here: no JWKS, so no user token can pass, whatever the request carries.
  const env = {
    url: config.database.url,
    secretKeys: config.maintenance.secretKeys,
    publishableKeys: {},
    jwks: null,
  };

  return createMiddleware<AppEnv>(async (c, next) => {
    const { error } = await verifyCredentials(extractCredentials(c.req.raw), { auth: mode, env });
    if (error) {
      c.var.log.info("auth_refused", { reason: error.code });
      throw new AppError("secret_key_required");
    }
    await next();
  });
}

// How the callback answers the browser Meta sent back. With INSTAGRAM_FRONTEND_REDIRECT_URI: a redirect
// to the dashboard, the pending token in the URL fragment (a fragment reaches no server log and no
// Referer) or, on failure, only `connected=0` and a stable error code in the query. Without it: JSON.
import type { Context } from "hono";
import type { Config } from "../_shared/config.ts";
import type { AppError } from "../_shared/errors.ts";
import { jsonError } from "../_shared/http/error_response.ts";
import type { AppEnv } from "../_shared/http/request_context.ts";

export function pendingAnswer(
  c: Context<AppEnv>,
  config: Config<"login">,
  pending: { token: string; expiresAt: string },
): Response {
  if (config.login.frontendRedirectUri) {
    const fragment = new URLSearchParams({ instagram_pending: pending.token });
    return c.redirect(`${config.login.frontendRedirectUri}#${fragment}`, 302);
  }
  return c.json({
    pending: pending.token,
    expires_at: pending.expiresAt,
    correlation_id: c.var.correlationId,
  });
}

export function failedAnswer(c: Context<AppEnv>, config: Config<"login">, error: AppError): Response {
  if (config.login.frontendRedirectUri) {
    if (error.retryAfterSeconds) c.header("retry-after", String(error.retryAfterSeconds));
    const url = new URL(config.login.frontendRedirectUri);
    url.searchParams.set("connected", "0");
    url.searchParams.set("error", error.code);
    // Which permissions were not granted (names from our own list, no secret), so the dashboard can say.
    const missing = (error.cause as { missing?: string[] } | undefined)?.missing;
    if (error.code === "permissions_missing" && missing?.length) {
      url.searchParams.set("missing", missing.join(","));
    }
    // Meta appends "#_=_" to its redirect and browsers carry a fragment over redirects that have none;
    // an explicit empty fragment keeps it off the dashboard's URL (config refuses a URL with its own).
    return c.redirect(`${url}#`, 302);
  }
  return jsonError(c, error);
}

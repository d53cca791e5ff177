// How the callback answers: a redirect to the dashboard when INSTAGRAM_FRONTEND_REDIRECT_URI is set
// (only `connected` and a stable error code in the URL, never Meta's text), JSON otherwise.
import type { Context } from "hono";
import type { Config } from "./config.ts";
import type { AppError } from "./errors.ts";
import { type AppEnv, jsonError } from "./http.ts";
import type { LinkedAccount } from "./database.ts";

export function connectedResponse(c: Context<AppEnv>, config: Config, link: LinkedAccount): Response {
  if (config.frontendRedirectUri) {
    return c.redirect(frontendUrl(config.frontendRedirectUri, { connected: "1" }), 302);
  }
  return c.json({
    connected: true,
    instagram_page_id: link.instagram_page_id,
    instagram_username: link.instagram_username,
    page_name: link.page_name,
    connected_at: link.connected_at,
    correlation_id: c.var.correlationId,
  });
}

export function failedResponse(c: Context<AppEnv>, config: Config, error: AppError): Response {
  if (config.frontendRedirectUri) {
    return c.redirect(frontendUrl(config.frontendRedirectUri, { connected: "0", error: error.code }), 302);
  }
  return jsonError(c, error);
}

function frontendUrl(base: string, params: Record<string, string>): string {
  const url = new URL(base);
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
  // Meta appends "#_=_" to its redirect and browsers carry a fragment over redirects that have none;
  // an explicit empty fragment keeps it off the dashboard's URL.
  return `${url.toString().replace(/#.*$/, "")}#`;
}

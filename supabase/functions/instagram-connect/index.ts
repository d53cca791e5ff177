// GET or POST /functions/v1/instagram-connect (Authorization: Bearer <the doctor's Supabase JWT>)
// Starts the Instagram link: records a one-time state and answers Meta's login dialog URL, as JSON
// { url, expires_at } for fetch clients or as a 302 for browser navigations. Optional ?page_id=.
import { Hono } from "hono";
import { cors } from "hono/cors";
import { withSupabase } from "@supabase/server/adapters/hono";
import { loadConfig } from "../_shared/config.ts";
import { createDatabase } from "../_shared/database.ts";
import { AppError } from "../_shared/errors.ts";
import { type AppEnv, asAppError, jsonError, requestContext } from "../_shared/http.ts";
import { metaDialogUrl } from "../_shared/meta_dialog.ts";
import { createOAuthStates } from "../_shared/oauth_state.ts";

const config = loadConfig();
const states = await createOAuthStates(config.appSecret);
const db = createDatabase(config);

const app = new Hono<AppEnv>({ strict: false }).basePath("/instagram-connect");

app.use("*", requestContext("instagram-connect"));
app.use("*", cors({ origin: [...config.allowedOrigins], exposeHeaders: ["x-correlation-id"], maxAge: 600 }));

app.on(["GET", "POST"], "/", withSupabase({ auth: "user", env: config.supabase }), async (c) => {
  const doctorId = c.var.supabaseContext.userClaims!.id;
  const pageId = await requestedPageId(c.req.raw);

  const { state, nonceHash, expiresAt } = await states.issue({
    doctorId,
    pageId,
    ttlSeconds: config.stateTtlSeconds,
  });
  await db.createOAuthState(doctorId, nonceHash, expiresAt);
  const url = metaDialogUrl(config, state);

  c.var.log.info("oauth_started", { doctor_id: doctorId, page_id: pageId, expires_at: expiresAt });
  if (isNavigation(c.req.raw)) return c.redirect(url, 302);
  return c.json({ url, expires_at: expiresAt.toISOString() });
});

app.notFound((c) => jsonError(c, asAppError(c, new AppError("not_found"))));
app.onError((error, c) => jsonError(c, asAppError(c, error)));

export default { fetch: app.fetch };

/** `page_id` from the query string, or from a JSON body (supabase.functions.invoke sends POST). */
async function requestedPageId(request: Request): Promise<string | undefined> {
  let value: unknown = new URL(request.url).searchParams.get("page_id") ?? undefined;
  if (value === undefined && request.headers.get("content-type")?.includes("application/json")) {
    value = ((await request.json().catch(() => ({}))) as { page_id?: unknown } | null)?.page_id;
  }
  if (value === undefined || value === null || value === "") return undefined;
  if (typeof value !== "string" || !/^\d{1,32}$/.test(value)) {
    throw new AppError("invalid_request", { message: "page_id must be a numeric Facebook Page id." });
  }
  return value;
}

function isNavigation(request: Request): boolean {
  if (request.headers.get("sec-fetch-mode") === "navigate") return true;
  const accept = request.headers.get("accept") ?? "";
  return accept.includes("text/html") && !accept.includes("application/json");
}

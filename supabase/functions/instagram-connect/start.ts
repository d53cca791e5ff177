// GET or POST /instagram-connect: starts a link for the signed-in doctor. Records a one-time state
// (at most 10 open per doctor) and answers Meta's login dialog URL, as JSON { url, expires_at } for
// fetch clients or as a 302 for browser navigations. Optional (query or JSON body): page_id, signed
// into the state, so that Page is the only one offered afterwards; rerequest, so that Meta asks again
// for permissions the doctor declined before (Meta does not, otherwise); via: "facebook" (Facebook Login
// and a Page) or "instagram" (Business Login for Instagram, no Page), by default facebook when the
// Facebook app is configured, else instagram. The path is signed into the state.
import type { Context } from "hono";
import * as z from "zod/mini";
import { AppError } from "../_shared/errors.ts";
import { optionalPageId } from "../_shared/ids.ts";
import { parseInput, readJsonBody } from "../_shared/http/request_input.ts";
import type { AppEnv } from "../_shared/http/request_context.ts";
import { metaDialogUrl } from "../_shared/meta/dialog.ts";
import { createInstagramLogin } from "../_shared/meta/instagram_login.ts";
import type { LoginVia } from "../_shared/oauth/state.ts";
import type { ConnectDeps } from "./deps.ts";

// An unknown via is the caller's mistake: 400 invalid_request (parseInput's answer).
const Via = z.optional(z.enum(["facebook", "instagram"]));
const StartRequest = z.object({
  via: Via,
  page_id: optionalPageId,
  rerequest: z.optional(z.boolean()),
});
const StartQuery = z.object({
  via: Via,
  page_id: optionalPageId,
  rerequest: z.optional(
    z.pipe(
      z.enum(["1", "true", "0", "false"]),
      z.transform((value) => value === "1" || value === "true"),
    ),
  ),
});

export function startConnect({ config, db, states }: ConnectDeps) {
  return async (c: Context<AppEnv>) => {
    const doctorId = c.var.doctorId;
    const query = parseInput(StartQuery, {
      via: c.req.query("via") || undefined,
      page_id: c.req.query("page_id") || undefined,
      rerequest: c.req.query("rerequest") || undefined,
    });
    const body = await readJsonBody(c, StartRequest);
    const pageId = body.page_id ?? query.page_id;
    const rerequest = body.rerequest ?? query.rerequest ?? false;

    const via: LoginVia = body.via ?? query.via ??
      (config.meta.facebook ? "facebook" : "instagram");
    // Instagram Login has no Page: a page_id there is a mistake, not something to ignore.
    if (via === "instagram" && pageId !== undefined) {
      throw new AppError("invalid_request", {
        message: "page_id is only for via=facebook.",
      });
    }
    // Before any state is recorded: a path without its app starts nothing.
    if (via === "facebook" ? !config.meta.facebook : !config.instagramLogin) {
      throw new AppError("login_path_not_configured");
    }
    const flow = await states.issue({
      doctorId,
      pageId,
      via,
      ttlSeconds: config.login.stateTtlSeconds,
    });
    await db.createOAuthState(doctorId, flow.nonceHash, flow.expiresAt);
    // Instagram path: no PKCE ("Business Login for Instagram" documents no code_challenge), the signed
    // one-time state is the CSRF protection. rerequest becomes force_reauth=true, which Meta documents as
    // asking for the Instagram credentials again; Instagram documents no way to ask again for a declined
    // permission, so that is the closest thing, and the client builds it (instagram_login.ts, one place).
    const url = via === "facebook"
      ? metaDialogUrl(config, flow, { rerequest })
      : createInstagramLogin(config, c.var.log).authorizeUrl(flow, {
        rerequest,
      });

    c.var.log.info("oauth_started", {
      doctor_id: doctorId,
      via,
      page_id: pageId,
      rerequest,
      expires_at: flow.expiresAt,
    });
    if (isNavigation(c.req.raw)) return c.redirect(url, 302);
    return c.json({ url, expires_at: flow.expiresAt.toISOString() });
  };
}

function isNavigation(request: Request): boolean {
  if (request.headers.get("sec-fetch-mode") === "navigate") return true;
  const accept = request.headers.get("accept") ?? "";
  return accept.includes("text/html") && !accept.includes("application/json");
}

// GET or POST /instagram-connect: starts a link for the signed-in doctor. Records a one-time state
// (at most 10 open per doctor) and answers Meta's login dialog URL, as JSON { url, expires_at } for
// fetch clients or as a 302 for browser navigations. Optional page_id (query or JSON body): signed
// into the state, so that Page is the only one offered afterwards.
import type { Context } from "hono";
import { z } from "zod";
import type { Config } from "../_shared/config.ts";
import type { Database } from "../_shared/database.ts";
import { parseInput, readJsonBody } from "../_shared/http/json_body.ts";
import type { AppEnv } from "../_shared/http/request_context.ts";
import { metaDialogUrl } from "../_shared/meta/dialog.ts";
import type { OAuthStates } from "../_shared/oauth/state.ts";

export interface ConnectDeps {
  config: Config;
  db: Database;
  states: OAuthStates;
}

const StartRequest = z.object({
  page_id: z.string().regex(/^\d{1,32}$/, "must be a numeric Facebook Page id").optional(),
});

export function startConnect({ config, db, states }: ConnectDeps) {
  return async (c: Context<AppEnv>) => {
    const doctorId = c.var.doctorId;
    const query = parseInput(StartRequest, { page_id: c.req.query("page_id") || undefined });
    const body = await readJsonBody(c, StartRequest);
    const pageId = body.page_id ?? query.page_id;

    const flow = await states.issue({ doctorId, pageId, ttlSeconds: config.stateTtlSeconds });
    await db.createOAuthState(doctorId, flow.nonceHash, flow.expiresAt);
    const url = metaDialogUrl(config, flow);

    c.var.log.info("oauth_started", { doctor_id: doctorId, page_id: pageId, expires_at: flow.expiresAt });
    if (isNavigation(c.req.raw)) return c.redirect(url, 302);
    return c.json({ url, expires_at: flow.expiresAt.toISOString() });
  };
}

function isNavigation(request: Request): boolean {
  if (request.headers.get("sec-fetch-mode") === "navigate") return true;
  const accept = request.headers.get("accept") ?? "";
  return accept.includes("text/html") && !accept.includes("application/json");
}

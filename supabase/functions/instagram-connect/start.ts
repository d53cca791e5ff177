// GET or POST /instagram-connect: starts a link for the signed-in doctor. Records a one-time state
// (at most 10 open per doctor) and answers Meta's login dialog URL, as JSON { url, expires_at } for
// fetch clients or as a 302 for browser navigations. Optional (query or JSON body): page_id, signed
// into the state, so that Page is the only one offered afterwards; rerequest, so that Meta asks again
// for permissions the doctor declined before (Meta does not, otherwise).
import type { Context } from "hono";
import * as z from "zod/mini";
import { AppError } from "../_shared/errors.ts";
import { optionalPageId } from "../_shared/ids.ts";
import { parseInput, readJsonBody } from "../_shared/http/request_input.ts";
import type { AppEnv } from "../_shared/http/request_context.ts";
import { metaDialogUrl } from "../_shared/meta/dialog.ts";
import type { ConnectDeps } from "./deps.ts";

const StartRequest = z.object({
  page_id: optionalPageId,
  rerequest: z.optional(z.boolean()),
});
const StartQuery = z.object({
  page_id: optionalPageId,
  rerequest: z.optional(
    z.pipe(z.enum(["1", "true", "0", "false"]), z.transform((value) => value === "1" || value === "true")),
  ),
});

export function startConnect({ config, db, states }: ConnectDeps) {
  return async (c: Context<AppEnv>) => {
    const doctorId = c.var.doctorId;
    const query = parseInput(StartQuery, {
      page_id: c.req.query("page_id") || undefined,
      rerequest: c.req.query("rerequest") || undefined,
    });
    const body = await readJsonBody(c, StartRequest);
    const pageId = body.page_id ?? query.page_id;
    const rerequest = body.rerequest ?? query.rerequest ?? false;

    // Before any state is recorded: a path without its app starts nothing.
    if (!config.meta.facebook) throw new AppError("login_path_not_configured");
    const flow = await states.issue({ doctorId, pageId, ttlSeconds: config.login.stateTtlSeconds });
    await db.createOAuthState(doctorId, flow.nonceHash, flow.expiresAt);
    const url = metaDialogUrl(config, flow, { rerequest });

    c.var.log.info("oauth_started", {
      doctor_id: doctorId,
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

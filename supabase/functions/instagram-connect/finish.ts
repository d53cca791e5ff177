// POST /instagram-connect/finish { pending, page_id? }: the signed-in doctor confirms a pending
// connection. Only the doctor who started the flow may: anyone else gets 403, and the pending
// connection is destroyed and the refusal audited (by open_pending_connection). Several usable Pages
// and no page_id: the Pages to choose from (never a token), and the pending connection stays.
// Otherwise one transaction consumes it and links the Page (409 if another doctor holds it).
import type { Context } from "hono";
import { z } from "zod";
import { AppError } from "../_shared/errors.ts";
import { readJsonBody } from "../_shared/http/json_body.ts";
import type { AppEnv } from "../_shared/http/request_context.ts";
import { PENDING_TOKEN, pendingTokenHash } from "../_shared/oauth/pending_token.ts";
import type { ConnectDeps } from "./start.ts";

const FinishRequest = z.object({
  pending: z.string().regex(PENDING_TOKEN, "must be the token from the callback"),
  page_id: z.string().regex(/^\d{1,32}$/, "must be a numeric Facebook Page id").optional(),
});

export function finishConnect({ db }: ConnectDeps) {
  return async (c: Context<AppEnv>) => {
    const body = await readJsonBody(c, FinishRequest);
    const ref = {
      doctorId: c.var.doctorId,
      tokenHash: await pendingTokenHash(body.pending),
      pageId: body.page_id,
      correlationId: c.var.correlationId,
    };

    const opened = await db.openPendingConnection(ref);
    if (opened.outcome === "session_mismatch") {
      c.var.log.warn("link_refused", { doctor_id: ref.doctorId, reason: "session_mismatch" });
      throw new AppError("session_mismatch");
    }
    if (opened.outcome === "choose") {
      return c.json({ connected: false, choose: opened.pages, expires_at: opened.expires_at });
    }

    const link = await db.linkPendingConnection({ ...ref, pageId: opened.page.page_id });
    c.var.log.info("instagram_linked", {
      doctor_id: link.doctor_id,
      page_id: link.instagram_page_id,
      previous_page_id: link.previous_page_id,
    });
    return c.json({
      connected: true,
      link: {
        instagram_page_id: link.instagram_page_id,
        instagram_username: link.instagram_username,
        page_name: link.page_name,
        connected_at: link.connected_at,
      },
    });
  };
}

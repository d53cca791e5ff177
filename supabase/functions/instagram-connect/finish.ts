// POST /instagram-connect/finish { pending, page_id? }: the signed-in doctor confirms a pending
// connection. Only the doctor who started the flow may: anyone else gets 403, and the pending
// connection is destroyed and the refusal audited (by open_pending_connection). Several usable Pages
// and no page_id: the Pages to choose from (never a token), and the pending connection stays.
// Otherwise the Page is subscribed to the app's webhooks first (a failure links nothing), then one
// transaction consumes the pending connection and links the Page (409 if another doctor holds it).
import type { Context } from "hono";
import * as z from "zod/mini";
import { AppError } from "../_shared/errors.ts";
import { optionalPageId } from "../_shared/ids.ts";
import { readJsonBody } from "../_shared/http/request_input.ts";
import type { AppEnv } from "../_shared/http/request_context.ts";
import { createMetaGraph } from "../_shared/meta/graph.ts";
import { PENDING_TOKEN, pendingTokenHash } from "../_shared/oauth/pending_token.ts";
import { pageWebhooks } from "./page_webhooks.ts";
import type { ConnectDeps } from "./deps.ts";

const FinishRequest = z.object({
  pending: z.string().check(z.regex(PENDING_TOKEN, "must be the token from the callback")),
  page_id: optionalPageId,
});

export function finishConnect({ config, db, tokenKey }: ConnectDeps) {
  return async (c: Context<AppEnv>) => {
    const body = await readJsonBody(c, FinishRequest);
    const doctorId = c.var.doctorId;
    const ref = {
      doctorId,
      tokenHash: await pendingTokenHash(body.pending),
      pageId: body.page_id,
      correlationId: c.var.correlationId,
    };

    const opened = await db.openPendingConnection(ref);
    if (opened.outcome === "session_mismatch") {
      c.var.log.warn("link_refused", { doctor_id: doctorId, reason: "session_mismatch" });
      throw new AppError("session_mismatch");
    }
    if (opened.outcome === "choose") {
      return c.json({ connected: false, choose: opened.pages, expires_at: opened.expires_at });
    }

    const webhooks = pageWebhooks(config, tokenKey, createMetaGraph(config, c.var.log), c.var.log);
    const deadline = AbortSignal.timeout(config.callbackDeadlineMs);
    const page = { doctorId, pageId: opened.page.page_id, encryptedToken: opened.page.access_token };
    await webhooks.subscribe(page, deadline);

    const link = await db.linkPendingConnection({ ...ref, pageId: page.pageId });
    // A doctor who moved to another Page: the old one should stop sending us its messages.
    const leftPage = link.previous_access_token && link.previous_page_id
      ? await webhooks.unsubscribe(
        { doctorId, pageId: link.previous_page_id, encryptedToken: link.previous_access_token },
        deadline,
      )
      : undefined;

    c.var.log.info("instagram_linked", {
      doctor_id: doctorId,
      page_id: link.instagram_page_id,
      previous_page_id: link.previous_page_id,
      previous_page_unsubscribed: leftPage,
      subscribed_fields: config.webhookFields,
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

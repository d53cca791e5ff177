// POST /instagram-connect/finish { pending, page_id? }: the signed-in doctor confirms a pending
// connection. Only the doctor who started the flow may: anyone else gets 403, and the pending
// connection is destroyed and the refusal audited (by open_pending_connection). Several usable Pages
// and no page_id: the Pages to choose from (never a token), and the pending connection stays.
// Otherwise the Page is subscribed to the app's webhooks first (a failure links nothing), the Page the
// doctor leaves (if any) is unsubscribed while they still hold it, so no other doctor can link it in
// between, and one transaction consumes the pending connection and links the Page (409 if another
// doctor holds it). If that transaction fails, Meta is put back as it was.
import type { Context } from "hono";
import * as z from "zod/mini";
import { AppError } from "../_shared/errors.ts";
import { optionalPageId } from "../_shared/ids.ts";
import { readJsonBody } from "../_shared/http/request_input.ts";
import type { AppEnv } from "../_shared/http/request_context.ts";
import { createMetaGraph } from "../_shared/meta/graph.ts";
import { PENDING_TOKEN, pendingTokenHash } from "../_shared/oauth/pending_token.ts";
import type { ConnectDeps } from "./deps.ts";
import { pageWebhooks, type StoredPage } from "./page_webhooks.ts";

const FinishRequest = z.object({
  pending: z.string().check(z.regex(PENDING_TOKEN, "must be the token from the callback")),
  page_id: optionalPageId,
});

export function finishConnect({ config, db, keyring }: ConnectDeps) {
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

    const webhooks = pageWebhooks(
      config,
      keyring,
      createMetaGraph(config, c.var.log),
      c.var.log,
      (page, reason) => db.flagLink(page.doctorId, page.encryptedToken, reason, c.var.correlationId),
    );
    const deadline = AbortSignal.timeout(config.meta.requestDeadlineMs);
    const page = stored(doctorId, opened.page);
    const leaving = opened.leaving && stored(doctorId, opened.leaving);
    await webhooks.subscribe(page, deadline);
    const leftUnsubscribed = leaving ? await webhooks.unsubscribe(leaving, deadline) : undefined;

    const link = await db.linkPendingConnection({ ...ref, pageId: page.pageId }).catch(async (error) => {
      if (leftUnsubscribed) await webhooks.resubscribe(leaving!, deadline);
      const heldByOthers = error instanceof AppError && error.code === "page_already_linked";
      if (!heldByOthers && !(await db.pageIsLinked(page.pageId).catch(() => true))) {
        await webhooks.unsubscribe(page, deadline);
      }
      throw error;
    });

    c.var.log.info("instagram_linked", {
      doctor_id: doctorId,
      page_id: link.instagram_page_id,
      previous_page_id: link.previous_page_id,
      previous_page_unsubscribed: leftUnsubscribed,
      subscribed_fields: config.webhooks.pageFields,
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

function stored(doctorId: string, page: { page_id: string; access_token: string }): StoredPage {
  return { doctorId, pageId: page.page_id, encryptedToken: page.access_token };
}

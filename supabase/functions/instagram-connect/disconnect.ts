// DELETE /instagram-connect: the doctor disconnects. At Meta: the Page is unsubscribed from the app's
// webhooks (Page token) and the app's permissions are revoked for the Facebook user (app token) unless
// another doctor's link or waiting connection uses the same user (a practice manager may link Pages for
// several doctors). The doctor's intent wins: whatever Meta answers, the link is deleted, and the
// answer and the audit entry say what happened at Meta.
import type { Context } from "hono";
import type { MetaOutcome } from "../_shared/database.ts";
import type { AppEnv } from "../_shared/http/request_context.ts";
import { createMetaGraph } from "../_shared/meta/graph.ts";
import type { ConnectDeps } from "./deps.ts";
import { pageWebhooks } from "./page_webhooks.ts";

export function disconnect({ config, db, keyring }: ConnectDeps) {
  return async (c: Context<AppEnv>) => {
    const doctorId = c.var.doctorId;
    const link = await db.prepareDisconnect(doctorId);

    const meta = createMetaGraph(config, c.var.log);
    const webhooks = pageWebhooks(
      config,
      keyring,
      meta,
      c.var.log,
      (page, reason) => db.flagLink(page.doctorId, page.encryptedToken, reason, c.var.correlationId),
    );
    const deadline = AbortSignal.timeout(config.meta.requestDeadlineMs);
    const unsubscribed = await webhooks.unsubscribe(
      { doctorId, pageId: link.page_id, encryptedToken: link.access_token },
      deadline,
    );
    let revoked: MetaOutcome["revoked"] = "skipped";
    if (link.facebook_user_id && !link.facebook_user_shared) {
      revoked = await meta.revokePermissions(link.facebook_user_id, deadline).then(() => true, (error) => {
        c.var.log.warn("permissions_revoke_failed", { error });
        return false;
      });
    } else {
      c.var.log.info("permissions_revoke_skipped", {
        reason: link.facebook_user_id ? "facebook_user_shared" : "facebook_user_unknown",
      });
    }

    const outcome = { unsubscribed, revoked };
    const deleted = await db.disconnect(doctorId, outcome, c.var.correlationId);
    // The doctor finished a link to another Page meanwhile (another tab): that one is gone too.
    if (deleted && deleted.page_id !== link.page_id) {
      await webhooks.unsubscribe(
        { doctorId, pageId: deleted.page_id, encryptedToken: deleted.access_token },
        deadline,
      );
    }
    // Another doctor may hold a Page unsubscribed here by now (this doctor's other tab moved to another
    // Page, and someone linked the one left, before Meta carried out our unsubscribe): resubscribe it with
    // that doctor's token. The holder is also checked first by the next maintenance run, which restores
    // the subscription if this fails, and repairs the late unsubscribes no request can see.
    // And a maintenance run that held this link while it was unsubscribed may have restored it: then,
    // with nobody holding the Page, it is unsubscribed once more (the run takes its restore back too).
    for (const pageId of new Set([link.page_id, deleted?.page_id].filter((id) => id !== undefined))) {
      const holder = await db.pageHolderToResubscribe(pageId);
      if (!holder) {
        if (link.leased && pageId === link.page_id) {
          await webhooks.unsubscribe({ doctorId, pageId, encryptedToken: link.access_token }, deadline);
        }
        continue;
      }
      c.var.log.warn("page_linked_elsewhere_during_disconnect", {
        page_id: pageId,
        holder_id: holder.doctor_id,
      });
      await webhooks.resubscribe(
        { doctorId: holder.doctor_id, pageId, encryptedToken: holder.access_token },
        deadline,
      );
    }
    c.var.log.info("instagram_disconnected", {
      doctor_id: doctorId,
      page_id: deleted?.page_id,
      meta: outcome,
    });
    return c.json({ disconnected: true, meta: outcome });
  };
}

// DELETE /instagram-connect: the doctor disconnects. At Meta: the Page is unsubscribed from the app's
// webhooks (Page token) and the app's permissions are revoked for the Facebook user (app token) unless
// another doctor's link uses the same user (a practice manager may have linked Pages for several
// doctors). The doctor's intent wins: whatever Meta answers, the link is deleted, and the answer and
// the audit entry say what happened at Meta.
import type { Context } from "hono";
import type { MetaOutcome } from "../_shared/database.ts";
import type { AppEnv } from "../_shared/http/request_context.ts";
import { createMetaGraph } from "../_shared/meta/graph.ts";
import { pageWebhooks } from "./page_webhooks.ts";
import type { ConnectDeps } from "./deps.ts";

export function disconnect({ config, db, tokenKey }: ConnectDeps) {
  return async (c: Context<AppEnv>) => {
    const doctorId = c.var.doctorId;
    const link = await db.prepareDisconnect(doctorId);

    const meta = createMetaGraph(config, c.var.log);
    const deadline = AbortSignal.timeout(config.callbackDeadlineMs);
    const unsubscribed = await pageWebhooks(config, tokenKey, meta, c.var.log).unsubscribe(
      { doctorId, pageId: link.page_id, encryptedToken: link.access_token },
      deadline,
    );
    let revoked: MetaOutcome["revoked"] = "skipped";
    if (link.facebook_user_id && !link.facebook_user_shared) {
      revoked = await meta.revokePermissions(link.facebook_user_id, deadline).then(() => true, (error) => {
        c.var.log.warn("permissions_revoke_failed", { error });
        return false;
      });
    }

    const outcome = { unsubscribed, revoked };
    await db.disconnect(doctorId, link.page_id, outcome, c.var.correlationId);
    c.var.log.info("instagram_disconnected", { doctor_id: doctorId, page_id: link.page_id, meta: outcome });
    return c.json({ disconnected: true, meta: outcome });
  };
}

// DELETE /instagram-connect: the doctor disconnects.
// 1. prepare_disconnect: the link stops holding its webhook subscription (a holder change: its version
//    moves) until the disconnect is done: no maintenance run takes it, and the doctor cannot link again
//    meanwhile (409 disconnect_in_progress);
// 2. the subscription converges (_shared/meta/link_webhooks.ts): nobody holds it, so it is unsubscribed
//    with the link's own token, and whoever wrote to it meanwhile (a maintenance run, another doctor's
//    finish) is seen and undone;
// 3. then, and only then, the Facebook user's grant is revoked (a Page link), unless another doctor's
//    link or waiting connection uses the same user (a practice manager may link Pages for several
//    doctors); while a maintenance run held the link, the revoke is left to that run's end: it may still
//    need the token to take back a restore. Instagram Login has no revoke
//    (Meta documents none): the answer says "skipped" with the reason, and the doctor removes the app in
//    Instagram's settings;
// 4. the link is deleted, audited with what Meta said. The doctor's intent wins: whatever Meta answered.
import type { Context } from "hono";
import type { MetaOutcome } from "../_shared/database.ts";
import type { AppEnv } from "../_shared/http/request_context.ts";
import { createMetaGraph } from "../_shared/meta/graph.ts";
import { createInstagramLogin } from "../_shared/meta/instagram_login.ts";
import { linkIds, linkWebhooks, storedLink } from "../_shared/meta/link_webhooks.ts";
import type { ConnectDeps } from "./deps.ts";

export function disconnect({ config, db, keyring }: ConnectDeps) {
  return async (c: Context<AppEnv>) => {
    const doctorId = c.var.doctorId;
    const log = c.var.log;
    // Longer than every Meta call here (one deadline for all) and a minute for the database.
    const fenceSeconds = Math.min(900, Math.max(120, Math.ceil(config.meta.requestDeadlineMs / 1000) + 60));
    const link = await db.prepareDisconnect(doctorId, fenceSeconds);

    const meta = createMetaGraph(config, log);
    const webhooks = linkWebhooks({
      config,
      keyring,
      meta,
      instagram: createInstagramLogin(config, log),
      db,
      log,
      tokenRefused: (held, reason) =>
        db.flagLink(held.doctorId, held.encryptedToken, reason, c.var.correlationId),
    });
    const deadline = AbortSignal.timeout(config.meta.requestDeadlineMs);
    const current = storedLink(doctorId, link);
    const converged = await webhooks.converge(current, deadline);
    const unsubscribed = !converged.subscribed && converged.error === undefined;

    let revoked: MetaOutcome["revoked"] = "skipped";
    let revokeSkipped: string | undefined;
    if (current.kind === "instagram_user") {
      revokeSkipped = "no_revoke_for_instagram_login";
    } else if (link.facebook_user_id && !link.facebook_user_shared) {
      // Revoked even when Meta refused the unsubscribe: the grant then goes all the same.
      revoked = link.leased_until
        ? await db.deferRevoke(link.facebook_user_id, link.leased_until, link.leased_by).then(() =>
          "deferred" as const
        )
        : await meta.revokePermissions(link.facebook_user_id, deadline).then(() => true, (error) => {
          log.warn("permissions_revoke_failed", { error });
          return false;
        });
    } else {
      revokeSkipped = link.facebook_user_id ? "facebook_user_shared" : "facebook_user_unknown";
    }
    if (revokeSkipped) log.info("permissions_revoke_skipped", { reason: revokeSkipped });

    const outcome = { unsubscribed, revoked };
    const deleted = await db.disconnect(doctorId, outcome, c.var.correlationId);
    const gone = deleted ? storedLink(doctorId, deleted) : undefined;
    // Only if the mark ran out first (a database stalled past it) can the doctor have linked again
    // meanwhile: that link is deleted too, so its subscription converges, and its Facebook user's grant
    // is left to maintenance (revoked once nobody uses it).
    if (gone && gone.encryptedToken !== current.encryptedToken) {
      await webhooks.converge(gone, deadline).catch((error) =>
        log.warn("subscription_converge_failed", { ...linkIds(gone), error })
      );
      const other = deleted?.facebook_user_id;
      if (other && other !== link.facebook_user_id) {
        await db.deferRevoke(other, new Date()).catch((error) => log.warn("revoke_defer_failed", { error }));
      }
    }
    log.info("instagram_disconnected", {
      doctor_id: doctorId,
      ...(gone ? linkIds(gone) : {}),
      meta: outcome,
      revoke_skipped: revokeSkipped,
    });
    return c.json({
      disconnected: true,
      // Only the Instagram path says why nothing was revoked: no revoke exists there to try.
      meta: current.kind === "instagram_user"
        ? { ...outcome, revoke_skipped_reason: revokeSkipped }
        : outcome,
    });
  };
}

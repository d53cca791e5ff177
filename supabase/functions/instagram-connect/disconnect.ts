// DELETE /instagram-connect: the doctor disconnects. At Meta:
// - a Page link (via facebook): the Page is unsubscribed from the app's webhooks (Page token) and the
//   app's permissions are revoked for the Facebook user (app token) unless another doctor's link or
//   waiting connection uses the same user (a practice manager may link Pages for several doctors);
// - an Instagram Login link: the account is unsubscribed (DELETE /me/subscribed_apps, which Meta does
//   not document: best effort), and nothing is revoked: Meta documents no revoke for Instagram Login
//   tokens, so the answer says "skipped" with the reason; the doctor removes the app in Instagram's
//   settings, and the token we held is deleted with the link.
// The doctor's intent wins: whatever Meta answers, the link is deleted, and the answer and the audit
// entry say what happened at Meta. Then every subscription the doctor left converges to what the
// database says (_shared/meta/link_webhooks.ts): a maintenance run, or the doctor's other tab, may have
// written to it meanwhile.
import type { Context } from "hono";
import type { MetaOutcome } from "../_shared/database.ts";
import type { AppEnv } from "../_shared/http/request_context.ts";
import { createMetaGraph } from "../_shared/meta/graph.ts";
import { createInstagramLogin } from "../_shared/meta/instagram_login.ts";
import { linkIds, linkWebhooks, type StoredLink, storedLink } from "../_shared/meta/link_webhooks.ts";
import type { ConnectDeps } from "./deps.ts";

export function disconnect({ config, db, keyring }: ConnectDeps) {
  return async (c: Context<AppEnv>) => {
    const doctorId = c.var.doctorId;
    // Takes the link's maintenance lease: no run starts on it now; `leased` says one was running.
    const link = await db.prepareDisconnect(doctorId);

    const meta = createMetaGraph(config, c.var.log);
    const webhooks = linkWebhooks({
      config,
      keyring,
      meta,
      instagram: createInstagramLogin(config, c.var.log),
      db,
      log: c.var.log,
      tokenRefused: (held, reason) =>
        db.flagLink(held.doctorId, held.encryptedToken, reason, c.var.correlationId),
    });
    const deadline = AbortSignal.timeout(config.meta.requestDeadlineMs);
    const current = storedLink(doctorId, link);
    const unsubscribed = await webhooks.unsubscribe(current, deadline);
    let revoked: MetaOutcome["revoked"] = "skipped";
    let revokeSkipped: string | undefined;
    if (current.kind === "instagram_user") {
      revokeSkipped = "no_revoke_for_instagram_login";
    } else if (link.facebook_user_id && !link.facebook_user_shared) {
      // A run that held the link may still restore its subscription, and must be able to take that
      // back: a revoke now would kill its token. The next run revokes (take_pending_revokes()).
      revoked = link.leased ? "deferred" : await meta.revokePermissions(link.facebook_user_id, deadline)
        .then(() => true, (error) => {
          c.var.log.warn("permissions_revoke_failed", { error });
          return false;
        });
    } else {
      revokeSkipped = link.facebook_user_id ? "facebook_user_shared" : "facebook_user_unknown";
    }
    if (revokeSkipped) {
      c.var.log.info("permissions_revoke_skipped", { reason: revokeSkipped });
    }

    const outcome = { unsubscribed, revoked };
    const deleted = await db.disconnect(doctorId, outcome, c.var.correlationId);
    // The doctor finished a link to another account meanwhile (another tab): that one is gone too.
    const gone = deleted ? storedLink(doctorId, deleted) : undefined;
    const left = new Map<string, StoredLink>(
      [current, gone].filter((l) => l !== undefined).map((l) => [key(l), l]),
    );
    for (const link of left.values()) {
      // Whoever holds it by now keeps it subscribed; nobody: unsubscribed, unless the revoke killed our
      // token (then no token of that grant can write to it, and the lease kept maintenance out). The
      // link another tab made may be another Facebook user's: its token is tried.
      // The link is gone whatever happens here: a failure is logged, not answered as the doctor's.
      await webhooks.converge(link, deadline, { mayUnsubscribe: revoked !== true || link !== current })
        .catch((error) => c.var.log.warn("subscription_converge_failed", { ...linkIds(link), error }));
    }
    c.var.log.info("instagram_disconnected", {
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

function key(link: StoredLink): string {
  return link.kind === "page" ? `page:${link.pageId}` : `ig:${link.accountId}`;
}

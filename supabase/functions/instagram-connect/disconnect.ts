// DELETE /instagram-connect: the doctor disconnects. At Meta:
// - a Page link (via facebook): the Page is unsubscribed from the app's webhooks (Page token) and the
//   app's permissions are revoked for the Facebook user (app token) unless another doctor's link or
//   waiting connection uses the same user (a practice manager may link Pages for several doctors);
// - an Instagram Login link: the account is unsubscribed (DELETE /me/subscribed_apps, not documented by
//   Meta, best effort: ig_facts.md §6), and nothing is revoked: Meta documents no revoke for Instagram
//   Login tokens (§8), so the answer says "skipped" with the reason; the doctor removes the app in
//   Instagram's settings, and the token we held is deleted with the link.
// The doctor's intent wins: whatever Meta answers, the link is deleted, and the answer and the audit
// entry say what happened at Meta.
import type { Context } from "hono";
import type { MetaOutcome } from "../_shared/database.ts";
import type { AppEnv } from "../_shared/http/request_context.ts";
import { createMetaGraph } from "../_shared/meta/graph.ts";
import { createInstagramLogin } from "../_shared/meta/instagram_login.ts";
import type { ConnectDeps } from "./deps.ts";
import { linkIds, linkWebhooks, type StoredLink, storedLink } from "./link_webhooks.ts";

export function disconnect({ config, db, keyring }: ConnectDeps) {
  return async (c: Context<AppEnv>) => {
    const doctorId = c.var.doctorId;
    const link = await db.prepareDisconnect(doctorId);

    const meta = createMetaGraph(config, c.var.log);
    const webhooks = linkWebhooks(
      config,
      keyring,
      meta,
      createInstagramLogin(config, c.var.log),
      c.var.log,
      (held, reason) =>
        db.flagLink(
          held.doctorId,
          held.encryptedToken,
          reason,
          c.var.correlationId,
        ),
    );
    const deadline = AbortSignal.timeout(config.meta.requestDeadlineMs);
    const current = storedLink(doctorId, link);
    const unsubscribed = await webhooks.unsubscribe(current, deadline);
    let revoked: MetaOutcome["revoked"] = "skipped";
    let revokeSkipped: string | undefined;
    if (current.kind === "instagram_user") {
      revokeSkipped = "no_revoke_for_instagram_login";
    } else if (link.facebook_user_id && !link.facebook_user_shared) {
      revoked = await meta.revokePermissions(link.facebook_user_id, deadline)
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
    const gone = deleted && storedLink(doctorId, deleted);
    // The doctor finished a link to another account meanwhile (another tab): that one is gone too.
    if (gone && key(gone) !== key(current)) {
      await webhooks.unsubscribe(gone, deadline);
    }
    // Another doctor may hold an account unsubscribed here by now (this doctor's other tab moved to
    // another one, and someone linked the one left, before Meta carried out our unsubscribe): a Page is
    // resubscribed with that doctor's token. The holder is also checked first by the next maintenance
    // run, which restores the subscription if this fails, and repairs the late unsubscribes no request
    // can see. And a maintenance run that held this link while it was unsubscribed may have restored it:
    // then, with nobody holding it, it is unsubscribed once more (the run takes its restore back too).
    for (
      const left of new Map(
        [current, gone].filter((l) => l !== undefined && l !== null).map((
          l,
        ) => [key(l!), l!]),
      ).values()
    ) {
      if (left.kind === "instagram_user") {
        // No RPC hands us another holder's Instagram token: maintenance restores that subscription.
        const held = await db.instagramAccountIsLinked(
          left.accountId,
          "instagram_user",
        ).catch(() => true);
        if (!held && link.leased && left === current) {
          await webhooks.unsubscribe(current, deadline);
        }
        continue;
      }
      const holder = await db.pageHolderToResubscribe(left.pageId);
      if (!holder) {
        if (link.leased && left === current) {
          await webhooks.unsubscribe(current, deadline);
        }
        continue;
      }
      c.var.log.warn("page_linked_elsewhere_during_disconnect", {
        page_id: left.pageId,
        holder_id: holder.doctor_id,
      });
      await webhooks.resubscribe(
        {
          kind: "page",
          doctorId: holder.doctor_id,
          pageId: left.pageId,
          encryptedToken: holder.access_token,
        },
        deadline,
      );
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

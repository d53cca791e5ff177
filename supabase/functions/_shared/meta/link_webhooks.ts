// A linked account must be subscribed to its app's webhooks, or no Instagram message for that doctor
// ever reaches the webhook worker. Two kinds of link, two subscriptions:
// - page (via facebook): "Webhooks for Pages": POST /{page-id}/subscribed_apps with the Page token and
//   INSTAGRAM_WEBHOOK_FIELDS;
// - instagram_user (via instagram): "Business Login for Instagram" / "Set up Instagram Webhooks":
//   POST /me/subscribed_apps on graph.instagram.com with the Instagram user token and
//   INSTAGRAM_LOGIN_WEBHOOK_FIELDS. Meta documents no DELETE there: best effort.
// Subscribing is idempotent at Meta, so a relink simply subscribes again.
//
// Several requests may write one subscription at once (a maintenance run restoring it, a disconnect, a
// finish). converge() keeps Meta as the database says, whatever interleaves:
// 1. every change of who holds a subscription bumps its version in the same transaction (a trigger,
//    supabase/schemas/12_subscriptions.sql);
// 2. whoever changed a holder, or wrote to a subscription, ends with converge(): read the version and the
//    holder, subscribe with the holder's token or unsubscribe with our own, read again, and repeat while
//    the version moved;
// 3. so the last write to land at Meta is followed by a read that saw no later change: Meta holds what
//    the database says.
// A revoke kills the tokens a converge needs: a disconnect revokes only after its own converge, and
// while a run held the link, leaves it to that run's end (prepare_disconnect(), defer_revoke()).
// Not covered: a write whose answer never came (a timeout) that lands after the last read. A held
// subscription is repaired by the next run; one nobody holds is not (Meta lists no app's subscriptions
// to find it). README, "Keeping Meta as the database says".
import type { Config } from "../config.ts";
import type { TokenBinding, TokenKeyring } from "../crypto/page_token.ts";
import type { Database, TokenKind } from "../database.ts";
import { AppError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { MetaGraph } from "./graph.ts";
import type { InstagramLogin } from "./instagram_login.ts";
import { instagramReasonFromError, type LinkStatusReason, reasonFromGraphError } from "./link_health.ts";

/** A link's token as stored: encrypted and bound to the doctor and the Page (page) or account (instagram_user). */
export type StoredLink =
  | { kind: "page"; doctorId: string; pageId: string; encryptedToken: string }
  | {
    kind: "instagram_user";
    doctorId: string;
    accountId: string;
    encryptedToken: string;
  };

export interface LinkWebhooks {
  /** Throws webhook_subscription_failed (or a clearer Meta class: token dead, permission missing, throttled). */
  subscribe(link: StoredLink, deadline: AbortSignal): Promise<void>;
  /** True when Meta confirmed; false (logged) on any failure. */
  unsubscribe(link: StoredLink, deadline: AbortSignal): Promise<boolean>;
  /**
   * Makes the subscription `mine` names what the database says (the protocol above). `mine` is the
   * caller's link of it: its token unsubscribes when nobody holds it, unless `mayUnsubscribe` is false
   * (its grant was revoked). A refusal that means the stored token is dead flags the link that holds it
   * (unless `flag` is false: maintenance records its own outcome).
   */
  converge(
    mine: StoredLink,
    deadline: AbortSignal,
    options?: { mayUnsubscribe?: boolean; flag?: boolean },
  ): Promise<Converged>;
}

/**
 * What converge() left: subscribed or not, by which link; `error` when its last write failed. A holder
 * that kept changing for every round is logged (subscription_unsettled): the next run repairs a held one.
 */
export interface Converged {
  subscribed: boolean;
  holder?: StoredLink;
  error?: unknown;
}

/** Rounds of converge() before it leaves the rest to maintenance; each is one write and one read. */
const CONVERGE_ROUNDS = 5;

const SPECIFIC_META_FAILURES = new Set([
  "meta_token_invalid",
  "permissions_missing",
  "meta_rate_limited",
]);

/**
 * Told when Meta refuses a stored token for good (a 190, a permission taken back): the link that holds
 * it is flagged needs_reconnect (flag_instagram_link), whatever call found it out.
 */
export type TokenRefused = (
  link: StoredLink,
  reason: LinkStatusReason,
) => Promise<unknown>;

/** A stored link as the database answers it (page_id absent for an Instagram Login link). */
export function storedLink(
  doctorId: string,
  row: {
    token_kind?: TokenKind;
    page_id?: string | null;
    instagram_account_id?: string | null;
    access_token: string;
  },
): StoredLink {
  return row.token_kind === "instagram_user"
    ? {
      kind: "instagram_user",
      doctorId,
      accountId: row.instagram_account_id!,
      encryptedToken: row.access_token,
    }
    : {
      kind: "page",
      doctorId,
      pageId: row.page_id!,
      encryptedToken: row.access_token,
    };
}

/** What the log may say about a link: ids, never a token. */
export function linkIds(link: StoredLink) {
  return link.kind === "page"
    ? { token_kind: link.kind, page_id: link.pageId }
    : { token_kind: link.kind, instagram_account_id: link.accountId };
}

/** The subscription a link holds: its Page (the Facebook app's) or its account (the Instagram app's). */
function subscriptionOf(link: StoredLink): { tokenKind: TokenKind; objectId: string } {
  return { tokenKind: link.kind, objectId: link.kind === "page" ? link.pageId : link.accountId };
}

export function linkWebhooks(
  { config, keyring, meta, instagram, db, log, tokenRefused }: {
    config: Config<"webhooks" | "instagramLogin">;
    keyring: TokenKeyring;
    meta: MetaGraph;
    instagram: InstagramLogin;
    db: Pick<Database, "subscriptionTarget">;
    log: Logger;
    tokenRefused?: TokenRefused;
  },
): LinkWebhooks {
  /** A refusal that means the stored token is dead flags its link; the error is passed on as it was. */
  const noteRefusal = async (link: StoredLink, error: unknown) => {
    const reason = link.kind === "page"
      ? reasonFromGraphError(error)
      : instagramReasonFromError(error, false);
    if (!reason || !tokenRefused) return;
    await tokenRefused(link, reason).catch((flagError) => log.warn("link_flag_failed", { error: flagError }));
    log.warn("stored_token_refused", {
      doctor_id: link.doctorId,
      ...linkIds(link),
      reason,
    });
  };

  const token = (link: StoredLink) => {
    const binding: TokenBinding = link.kind === "page"
      ? { doctorId: link.doctorId, pageId: link.pageId }
      : { doctorId: link.doctorId, instagramAccountId: link.accountId };
    return keyring.decrypt(link.encryptedToken, binding);
  };
  const fieldsOf = (link: StoredLink) =>
    link.kind === "page" ? config.webhooks.pageFields : config.instagramLogin?.webhookFields ?? [];

  const subscribe = async (link: StoredLink, deadline: AbortSignal) => {
    const fields = fieldsOf(link);
    if (fields.length === 0) return;
    try {
      if (link.kind === "page") {
        await meta.subscribePage(link.pageId, await token(link), fields, deadline);
      } else await instagram.subscribe(await token(link), fields, deadline);
    } catch (error) {
      if (error instanceof AppError && SPECIFIC_META_FAILURES.has(error.code)) throw error;
      throw new AppError("webhook_subscription_failed", { cause: error });
    }
  };

  const unsubscribe = async (link: StoredLink, deadline: AbortSignal, flag = true) => {
    try {
      if (link.kind === "page") {
        await meta.unsubscribePage(link.pageId, await token(link), deadline);
      } else await instagram.unsubscribe(await token(link), deadline);
      return true;
    } catch (error) {
      log.warn(`${prefix(link)}_unsubscribe_failed`, { ...linkIds(link), error });
      if (flag) await noteRefusal(link, error);
      return false;
    }
  };

  return {
    subscribe,
    unsubscribe: (link, deadline) => unsubscribe(link, deadline),

    async converge(mine, deadline, { mayUnsubscribe = true, flag = true } = {}) {
      const { tokenKind, objectId } = subscriptionOf(mine);
      let target = await db.subscriptionTarget(tokenKind, objectId);
      for (let round = 1;; round++) {
        const holder: StoredLink | undefined = target.holder
          ? { ...mine, doctorId: target.holder.doctor_id, encryptedToken: target.holder.access_token }
          : undefined;
        let error: unknown;
        if (holder) {
          await subscribe(holder, deadline).catch(async (failure) => {
            // Meta's own error, as subscribe() had it before wrapping it.
            error = failure instanceof AppError && failure.code === "webhook_subscription_failed"
              ? failure.cause ?? failure
              : failure;
            log.warn(`${prefix(holder)}_resubscribe_failed`, { ...linkIds(holder), error: failure });
            if (flag) await noteRefusal(holder, error);
          });
        } else if (mayUnsubscribe && !(await unsubscribe(mine, deadline, flag))) {
          error = new AppError("webhook_subscription_failed");
        }
        const after = await db.subscriptionTarget(tokenKind, objectId);
        if (after.version === target.version) return { subscribed: !!holder, holder, error };
        if (round === CONVERGE_ROUNDS) {
          log.warn("subscription_unsettled", { ...linkIds(mine), rounds: round });
          return { subscribed: !!holder, holder, error };
        }
        target = after;
      }
    },
  };
}

/** Log events keep their Page-era names for Page links (dashboards and tests read them). */
function prefix(link: StoredLink): "page" | "instagram" {
  return link.kind === "page" ? "page" : "instagram";
}

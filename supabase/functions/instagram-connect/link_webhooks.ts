// A linked account must be subscribed to its app's webhooks, or no Instagram message for that doctor
// ever reaches the webhook worker. Two kinds of link, two subscriptions:
// - page (via facebook): "Webhooks for Pages": POST /{page-id}/subscribed_apps with the Page token and
//   INSTAGRAM_WEBHOOK_FIELDS;
// - instagram_user (via instagram): "Business Login for Instagram" / "Set up Instagram Webhooks":
//   POST /me/subscribed_apps on graph.instagram.com with the Instagram user token and
//   INSTAGRAM_LOGIN_WEBHOOK_FIELDS. Its DELETE is not documented (ig_facts.md §6): best effort.
// Subscribing is idempotent at Meta, so a relink simply subscribes again; unsubscribing is best effort.
import type { Config } from "../_shared/config.ts";
import type { TokenBinding, TokenKeyring } from "../_shared/crypto/page_token.ts";
import type { TokenKind } from "../_shared/database.ts";
import { AppError } from "../_shared/errors.ts";
import type { Logger } from "../_shared/log.ts";
import type { MetaGraph } from "../_shared/meta/graph.ts";
import type { InstagramLogin } from "../_shared/meta/instagram_login.ts";
import { type LinkStatusReason, reasonFromGraphError } from "../_shared/meta/link_health.ts";

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
  /** Best effort, to undo an unsubscribe whose link then failed, or a late unsubscribe of another doctor. */
  resubscribe(link: StoredLink, deadline: AbortSignal): Promise<void>;
}

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

export function linkWebhooks(
  config: Config<"webhooks" | "instagramLogin">,
  keyring: TokenKeyring,
  meta: MetaGraph,
  instagram: InstagramLogin,
  log: Logger,
  tokenRefused?: TokenRefused,
): LinkWebhooks {
  /** A refusal that means the stored token is dead flags its link; the error is passed on as it was. */
  const noteRefusal = async (link: StoredLink, error: unknown) => {
    const reason = link.kind === "page" ? reasonFromGraphError(error) : instagramReason(error);
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

  return {
    async subscribe(link, deadline) {
      const fields = fieldsOf(link);
      if (fields.length === 0) return;
      try {
        if (link.kind === "page") {
          await meta.subscribePage(
            link.pageId,
            await token(link),
            fields,
            deadline,
          );
        } else await instagram.subscribe(await token(link), fields, deadline);
      } catch (error) {
        if (
          error instanceof AppError && SPECIFIC_META_FAILURES.has(error.code)
        ) throw error;
        throw new AppError("webhook_subscription_failed", { cause: error });
      }
    },

    async resubscribe(link, deadline) {
      await this.subscribe(link, deadline).catch(async (error) => {
        log.warn(`${prefix(link)}_resubscribe_failed`, { ...linkIds(link), error });
        await noteRefusal(link, error.cause ?? error);
      });
    },

    async unsubscribe(link, deadline) {
      try {
        if (link.kind === "page") {
          await meta.unsubscribePage(link.pageId, await token(link), deadline);
        } else await instagram.unsubscribe(await token(link), deadline);
        return true;
      } catch (error) {
        log.warn(`${prefix(link)}_unsubscribe_failed`, { ...linkIds(link), error });
        await noteRefusal(link, error);
        return false;
      }
    },
  };
}

/**
 * An Instagram Login token's refusal as an instagram_* status reason (an Instagram link never takes a
 * Page reason). graph.instagram.com's expired-token subcode is undocumented (ig_facts.md §10): any 190
 * means the doctor must log in again.
 */
function instagramReason(error: unknown): LinkStatusReason | undefined {
  if (!(error instanceof AppError)) return undefined;
  if (error.code === "meta_token_invalid") return "instagram_token_invalid";
  if (error.code === "permissions_missing") {
    return "instagram_permissions_missing";
  }
  return undefined;
}

/** Log events keep their Page-era names for Page links (dashboards and tests read them). */
function prefix(link: StoredLink): "page" | "instagram" {
  return link.kind === "page" ? "page" : "instagram";
}

// A linked Page must be subscribed to the app's webhooks, or no Instagram message for that doctor ever
// reaches the webhook worker ("Webhooks for Pages": POST /{page-id}/subscribed_apps with the Page token).
// Subscribing is idempotent at Meta, so a relink simply subscribes again; unsubscribing is best effort.
import type { Config } from "../_shared/config.ts";
import type { TokenKeyring } from "../_shared/crypto/page_token.ts";
import { AppError } from "../_shared/errors.ts";
import type { Logger } from "../_shared/log.ts";
import type { MetaGraph } from "../_shared/meta/graph.ts";
import { type LinkStatusReason, reasonFromGraphError } from "../_shared/meta/link_health.ts";

export interface StoredPage {
  doctorId: string;
  pageId: string;
  /** The Page token as stored: encrypted and bound to the doctor and the Page. */
  encryptedToken: string;
}

export interface PageWebhooks {
  /** Throws webhook_subscription_failed (or a clearer Meta class: token dead, permission missing, throttled). */
  subscribe(page: StoredPage, deadline: AbortSignal): Promise<void>;
  /** True when Meta confirmed; false (logged) on any failure. */
  unsubscribe(page: StoredPage, deadline: AbortSignal): Promise<boolean>;
  /** Best effort, to undo an unsubscribe whose link then failed, or a late unsubscribe of another doctor. */
  resubscribe(page: StoredPage, deadline: AbortSignal): Promise<void>;
}

const SPECIFIC_META_FAILURES = new Set(["meta_token_invalid", "permissions_missing", "meta_rate_limited"]);

/**
 * Told when Meta refuses a stored token for good (a 190, a permission taken back): the link that holds
 * it is flagged needs_reconnect (flag_instagram_link), whatever call found it out.
 */
export type TokenRefused = (page: StoredPage, reason: LinkStatusReason) => Promise<unknown>;

export function pageWebhooks(
  config: Config<"webhooks">,
  keyring: TokenKeyring,
  meta: MetaGraph,
  log: Logger,
  tokenRefused?: TokenRefused,
): PageWebhooks {
  /** A refusal that means the stored token is dead flags its link; the error is passed on as it was. */
  const noteRefusal = async (page: StoredPage, error: unknown) => {
    const reason = reasonFromGraphError(error);
    if (!reason || !tokenRefused) return;
    await tokenRefused(page, reason).catch((flagError) => log.warn("link_flag_failed", { error: flagError }));
    log.warn("stored_token_refused", { doctor_id: page.doctorId, page_id: page.pageId, reason });
  };

  const pageToken = (page: StoredPage) =>
    keyring.decrypt(page.encryptedToken, { doctorId: page.doctorId, pageId: page.pageId });

  return {
    async subscribe(page, deadline) {
      if (config.webhooks.pageFields.length === 0) return;
      try {
        await meta.subscribePage(page.pageId, await pageToken(page), config.webhooks.pageFields, deadline);
      } catch (error) {
        if (error instanceof AppError && SPECIFIC_META_FAILURES.has(error.code)) throw error;
        throw new AppError("webhook_subscription_failed", { cause: error });
      }
    },

    async resubscribe(page, deadline) {
      await this.subscribe(page, deadline).catch(async (error) => {
        log.warn("page_resubscribe_failed", { page_id: page.pageId, error });
        await noteRefusal(page, error.cause ?? error);
      });
    },

    async unsubscribe(page, deadline) {
      try {
        await meta.unsubscribePage(page.pageId, await pageToken(page), deadline);
        return true;
      } catch (error) {
        log.warn("page_unsubscribe_failed", { page_id: page.pageId, error });
        await noteRefusal(page, error);
        return false;
      }
    },
  };
}

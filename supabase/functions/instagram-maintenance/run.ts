// POST /instagram-maintenance: one run of the links' upkeep (README, "Keeping links alive").
// 1. Refuse to run while a stored token uses a key INSTAGRAM_TOKEN_ENCRYPTION_KEYS no longer lists,
//    naming the key and the count: rows under a dropped key could never be decrypted again.
// 2. Lease up to `batch` links (50), least recently checked first, and check each at Meta
//    (check_link.ts), at most 4 at once. Meta's usage headers ("Rate Limits": X-App-Usage,
//    X-Business-Use-Case-Usage) are read on every answer; once a figure passes 75% no further check
//    starts, and the links left are deferred to the next run. Each outcome is recorded under the lease;
//    the leases of links not recorded are released at the end. Instagram Login links (token_kind
//    instagram_user) are checked at graph.instagram.com instead, and their tokens refreshed when due
//    (check_link.ts, checkInstagramLink); the same usage stop applies to whatever usage headers that host
//    sends. Meta's Instagram Login pages document none and the fake sends none (guess), so in practice
//    only the Page links' answers stop a run.
//    A missing subscription is restored by converging (_shared/meta/link_webhooks.ts), so a disconnect
//    or a move during the check leaves Meta as the database says.
// 3. Revoke the Facebook users whose revoke a disconnect left to maintenance because this run held the
//    link (its converges are done now), or another run whose lease has ended (take_pending_revokes():
//    each is claimed for an hour and done once Meta confirms; those another doctor uses again are dropped).
// 4. Re-encrypt up to `batch` tokens under the primary key (compare-and-swap: a token the doctor
//    replaced meanwhile is left alone).
// 5. Sweep: expired states and pending connections, webhook events past INSTAGRAM_EVENT_RETENTION_DAYS.
// Two runs at once are safe: a leased link is skipped by the other run, and every write is conditional.
import type { Context } from "hono";
import type { TokenBinding } from "../_shared/crypto/page_token.ts";
import { describeMissingKeys, missingKeys } from "../_shared/crypto/token_key_usage.ts";
import { AppError } from "../_shared/errors.ts";
import type { AppEnv } from "../_shared/http/request_context.ts";
import type { Logger } from "../_shared/log.ts";
import { createMetaGraph } from "../_shared/meta/graph.ts";
import { createInstagramLogin } from "../_shared/meta/instagram_login.ts";
import { linkWebhooks } from "../_shared/meta/link_webhooks.ts";
import { checkInstagramLink, checkLink, readToken, TokenUnreadableError } from "./check_link.ts";
import type { MaintenanceDeps } from "./deps.ts";

/** "Rate Limits": Meta throttles at 100%; stopping at 75% leaves room for the doctors' own requests. */
const USAGE_STOP_PERCENT = 75;
const META_CALLS_AT_ONCE = 4;

export interface MaintenanceSummary {
  checked: number;
  /** Links that became needs_reconnect in this run. */
  flagged: number;
  /** Links that were needs_reconnect and are active again. */
  recovered: number;
  /** Instagram Login tokens refreshed and stored (60 more days). */
  refreshed: number;
  /** Page (or Instagram account) subscriptions found missing and restored. */
  restored: number;
  /** Facebook users revoked for disconnects that left it to maintenance. */
  revoked: number;
  reencrypted: number;
  /** Leased but not checked: Meta's usage passed the threshold. */
  deferred: number;
  /** Checks that failed in a way that may pass (Meta down, throttled): tried again next run. */
  failed: number;
  /**
   * Stored tokens no listed key decrypts although their key id is listed (a key replaced under the same
   * id): logged with the doctor and key id, left as they are; the operator must restore the key.
   */
  unreadable: number;
  purged: number;
}

export function runMaintenance({ config, db, keyring }: MaintenanceDeps) {
  return async (c: Context<AppEnv>) => {
    const log = c.var.log;
    const missing = missingKeys(await db.tokenKeyUsage(), keyring);
    if (missing.length > 0) {
      log.error("token_key_missing", { key_ids: missing.map(({ keyId }) => keyId), missing });
      throw new AppError("token_key_missing", { message: describeMissingKeys(missing) });
    }

    const summary: MaintenanceSummary = {
      checked: 0,
      flagged: 0,
      recovered: 0,
      restored: 0,
      refreshed: 0,
      revoked: 0,
      reencrypted: 0,
      deferred: 0,
      failed: 0,
      unreadable: 0,
      purged: 0,
    };
    let usage = 0;
    const onUsage = (percent: number) => usage = Math.max(usage, percent);
    const meta = createMetaGraph(config, log, { onUsage });
    const login = createInstagramLogin(config, log, { onUsage });
    const webhooks = linkWebhooks({ config, keyring, meta, instagram: login, db, log });
    const leaseId = crypto.randomUUID();
    const links = await db.leaseLinks(leaseId, config.maintenance.batch, leaseSeconds(config));

    await eachAtMost(META_CALLS_AT_ONCE, links, async (link) => {
      if (usage > USAGE_STOP_PERCENT) {
        summary.deferred++;
        return;
      }
      const instagram = link.token_kind === "instagram_user";
      const check = instagram
        ? checkInstagramLink(link, { config, keyring, login, webhooks, db, leaseId })
        : checkLink(link, { config, keyring, meta, webhooks });
      const health = await check.catch((error) => {
        if (error instanceof TokenUnreadableError) {
          summary.unreadable++;
          log.error("token_unreadable", { doctor_id: link.doctor_id, key_id: error.keyId });
        } else {
          summary.failed++;
          log.warn("link_check_failed", {
            doctor_id: link.doctor_id,
            page_id: link.page_id,
            instagram_account_id: instagram ? link.instagram_account_id : undefined,
            error,
          });
        }
        return undefined;
      });
      if (!health) return;
      // The refresh found the link changed (reconnected, disconnected): nothing of this check applies.
      if (health.stale) {
        log.info("link_changed_during_check", { doctor_id: link.doctor_id });
        return;
      }
      if (health.refreshedToken) {
        summary.refreshed++;
        log.info("token_refreshed", { doctor_id: link.doctor_id, expires_at: health.tokenExpiresAt });
      }
      const recorded = await db.recordLinkCheck({
        doctorId: link.doctor_id,
        leaseId,
        // After a refresh the row holds the new token: the outcome is recorded on that one.
        checkedToken: health.refreshedToken ?? link.access_token,
        reason: health.reason,
        reconnectBy: health.reconnectBy,
        tokenExpiresAt: health.tokenExpiresAt,
        correlationId: c.var.correlationId,
      });
      if (recorded === "stale") {
        log.info("link_changed_during_check", { doctor_id: link.doctor_id });
        return;
      }
      summary.checked++;
      if (health.restored) summary.restored++;
      if (recorded === "status_changed") {
        if (health.reason) summary.flagged++;
        else summary.recovered++;
        log.info("link_status_changed", {
          doctor_id: link.doctor_id,
          page_id: link.page_id,
          status: health.reason ? "needs_reconnect" : "active",
          reason: health.reason,
        });
      }
    });
    await db.releaseLinks(leaseId);
    if (summary.deferred > 0) {
      log.warn("maintenance_deferred", { deferred: summary.deferred, usage_percent: usage });
    }

    // This run's own deferred revokes (its checks are all done), and the others' past their date.
    for (const facebookUserId of await db.takePendingRevokes(leaseId)) {
      const done = await meta.revokePermissions(
        facebookUserId,
        AbortSignal.timeout(config.meta.requestDeadlineMs),
      )
        .then(() => true, (error) => {
          log.warn("permissions_revoke_failed", { error });
          // "(#100) Invalid user id": nothing of that user's left to revoke.
          return (error?.cause as { meta_code?: number } | undefined)?.meta_code === 100;
        });
      if (done) {
        await db.completePendingRevoke(facebookUserId);
        summary.revoked++;
      }
    }

    const reencryption = await reencrypt({ config, db, keyring }, c.var.correlationId, log);
    summary.reencrypted = reencryption.stored;
    summary.unreadable += reencryption.unreadable;
    summary.purged = (await db.runSweeps(config.maintenance.eventRetentionDays)).purged_events;

    c.set("outcome", { ...summary });
    return c.json(summary);
  };
}

/**
 * Up to `batch` tokens not under the primary key, decrypted with the key they name and encrypted again. A
 * token no key decrypts is logged and left as it is: one bad row must not hold up the others.
 */
async function reencrypt(
  { config, db, keyring }: MaintenanceDeps,
  correlationId: string,
  log: Logger,
): Promise<{ stored: number; unreadable: number }> {
  const stale = await db.linksToReencrypt(keyring.primaryId, config.maintenance.batch);
  const tokens = [];
  let unreadable = 0;
  for (const link of stale) {
    // An Instagram Login token is bound to its account (it has no Page).
    const binding: TokenBinding = link.token_kind === "instagram_user"
      ? { doctorId: link.doctor_id, instagramAccountId: link.instagram_account_id ?? "" }
      : { doctorId: link.doctor_id, pageId: link.page_id };
    try {
      const to = await keyring.encrypt(await readToken(keyring, link.access_token, binding), binding);
      tokens.push({ doctor_id: link.doctor_id, from: link.access_token, to });
    } catch (error) {
      if (!(error instanceof TokenUnreadableError)) throw error;
      unreadable++;
      log.error("token_unreadable", { doctor_id: link.doctor_id, key_id: error.keyId });
    }
  }
  return { stored: tokens.length ? await db.reencryptTokens(tokens, correlationId) : 0, unreadable };
}

/**
 * Long enough for the whole batch, 4 at a time, each check within the Meta deadline, and a minute for
 * the database: a lease that ran out mid-run would let a second run check the same links.
 */
function leaseSeconds(config: MaintenanceDeps["config"]): number {
  const rounds = Math.ceil(config.maintenance.batch / META_CALLS_AT_ONCE);
  return Math.min(900, Math.ceil((rounds * config.meta.requestDeadlineMs) / 1000) + 60);
}

/** Runs `work` on every item, at most `limit` at once. */
async function eachAtMost<T>(limit: number, items: T[], work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await work(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

// One link's check at Meta, with the Page token it holds (decrypted here, never logged):
// 1. debug_token (as the app): still valid, still this Page's token for this app, with the permissions
//    a link needs, and when data access ends (link_health.ts maps each answer to a reason, with its
//    source);
// 2. the Page's subscribed apps: a missing subscription, or missing fields, is restored with the Page
//    fields the link uses, by converging (_shared/meta/link_webhooks.ts: a disconnect meanwhile is
//    seen, and the restore taken back); only when Meta refuses that is the link flagged
//    (subscription_lost, or the reason Meta's error gives).
// A refusal that says the token is dead (190, a lost permission) is an outcome; a failure that may pass
// (Meta down, throttled, timed out) is thrown, so nothing is recorded and the next run tries again.
import type { TokenBinding, TokenKeyring } from "../_shared/crypto/page_token.ts";
import type { Database, LeasedLink } from "../_shared/database.ts";
import type { InstagramLogin } from "../_shared/meta/instagram_login.ts";
import { type LinkWebhooks, storedLink } from "../_shared/meta/link_webhooks.ts";
import { AppError } from "../_shared/errors.ts";
import type { MetaGraph } from "../_shared/meta/graph.ts";
import {
  assessPageToken,
  instagramReasonFromError,
  type LinkStatusReason,
  reasonFromGraphError,
} from "../_shared/meta/link_health.ts";
import type { MaintenanceConfig } from "./deps.ts";

export interface LinkHealth {
  /** None: the link is active. */
  reason?: LinkStatusReason;
  reconnectBy?: Date;
  tokenExpiresAt?: Date;
  /** The subscription was missing (or lacked fields) and is back. */
  restored: boolean;
  /** Instagram Login: the token was refreshed and stored; the stored value the outcome is recorded on. */
  refreshedToken?: string;
  /** Instagram Login: the refresh was dropped as stale (the link changed meanwhile): record nothing. */
  stale?: boolean;
}

const HOUR_MS = 60 * 60 * 1000;
/** "Refresh Access Token": a token "at least 24 hours old" can be refreshed; a younger one is refused. */
const REFRESH_MIN_AGE_MS = 24 * HOUR_MS;
/** Refreshed when fewer than 30 days are left of its 60: one refresh a month, well before it ends. */
const REFRESH_WITHIN_MS = 30 * 24 * HOUR_MS;

/**
 * One Instagram Login link's check, with its Instagram user token (decrypted here, never logged), at
 * graph.instagram.com, never debug_token (that is the Facebook app's inspector for Facebook tokens):
 * 1. /me?fields=user_id: the token works and is still this account's ("Get Started": user_id is the
 *    professional account id webhooks carry). 190 -> instagram_token_expired when token_expires_at is
 *    past, else instagram_token_invalid; another account -> instagram_token_invalid.
 * 2. Refresh when at least 24 hours old and fewer than 30 days left ("Refresh Access Token"); stored
 *    under this run's lease (compare-and-swap). Meta refusing it for good -> instagram_refresh_failed, to
 *    reconnect by the old expiry (the token still works until then); a failure that may pass is thrown.
 * 3. /me/subscribed_apps: fields missing -> subscribe again ("Setup Webhooks Subscriptions"); refused ->
 *    instagram_subscription_lost.
 */
export async function checkInstagramLink(
  link: LeasedLink,
  { config, keyring, login, webhooks, db, leaseId }: {
    config: MaintenanceConfig;
    keyring: TokenKeyring;
    login: InstagramLogin;
    webhooks: LinkWebhooks;
    db: Database;
    leaseId: string;
  },
): Promise<LinkHealth> {
  const accountId = link.instagram_account_id ?? "";
  const binding = { doctorId: link.doctor_id, instagramAccountId: accountId };
  let token = await readToken(keyring, link.access_token, binding);
  const now = Date.now();
  const expiresAt = link.token_expires_at ? new Date(link.token_expires_at) : undefined;
  const expired = expiresAt !== undefined && expiresAt.getTime() <= now;
  const deadline = AbortSignal.timeout(config.meta.requestDeadlineMs);
  const refused = (error: unknown): LinkHealth => {
    const reason = instagramReasonFromError(error, expired);
    if (!reason) throw error;
    return { reason, restored: false };
  };

  try {
    const account = await login.readAccount(token, deadline);
    if (account.userId !== accountId) {
      return { reason: "instagram_token_invalid", restored: false };
    }
  } catch (error) {
    return refused(error);
  }
  // The token answered although the stored expiry is past: Meta's word wins, but the doctor is warned.
  if (expired) return { reason: "instagram_token_expired", restored: false };

  let health: LinkHealth = { restored: false, tokenExpiresAt: expiresAt };
  const refreshedAt = link.token_refreshed_at ? new Date(link.token_refreshed_at).getTime() : now;
  const due = now - refreshedAt >= REFRESH_MIN_AGE_MS &&
    expiresAt !== undefined &&
    expiresAt.getTime() - now < REFRESH_WITHIN_MS;
  if (due) {
    let fresh;
    try {
      fresh = await login.refresh(token, deadline);
    } catch (error) {
      if (mayPass(error)) throw error;
      return {
        reason: "instagram_refresh_failed",
        reconnectBy: expiresAt,
        tokenExpiresAt: expiresAt,
        restored: false,
      };
    }
    const stored = await keyring.encrypt(fresh.accessToken, binding);
    const newExpiry = new Date(Date.now() + fresh.expiresIn * 1000);
    const outcome = await db.recordTokenRefresh({
      doctorId: link.doctor_id,
      leaseId,
      oldToken: link.access_token,
      newToken: stored,
      expiresAt: newExpiry,
    });
    if (outcome === "stale") return { restored: false, stale: true };
    token = fresh.accessToken;
    health = {
      restored: false,
      tokenExpiresAt: newExpiry,
      refreshedToken: stored,
    };
  }

  const fields = config.instagramLogin?.webhookFields ?? [];
  if (fields.length === 0) return health;
  let subscribed: string[];
  try {
    subscribed = await login.subscriptions(token, deadline);
  } catch (error) {
    return { ...refused(error), refreshedToken: health.refreshedToken };
  }
  if (fields.every((field) => subscribed.includes(field))) return health;
  const stored = { ...link, access_token: health.refreshedToken ?? link.access_token };
  return {
    ...health,
    ...await restore(stored, webhooks, deadline, {
      reasonOf: (error) => instagramReasonFromError(error, false),
      lost: "instagram_subscription_lost",
    }),
  };
}

export async function checkLink(
  link: LeasedLink,
  { config, keyring, meta, webhooks }: {
    config: MaintenanceConfig;
    keyring: TokenKeyring;
    meta: MetaGraph;
    webhooks: LinkWebhooks;
  },
): Promise<LinkHealth> {
  const token = await readToken(keyring, link.access_token, {
    doctorId: link.doctor_id,
    pageId: link.page_id,
  });
  const deadline = AbortSignal.timeout(config.meta.requestDeadlineMs);
  try {
    const health = assessPageToken(await meta.debugToken(token, deadline), {
      // debugToken refuses first (login_path_not_configured) when no Facebook app is configured.
      appId: config.meta.facebook?.appId ?? "",
      pageId: link.page_id,
      instagramAccountId: link.instagram_account_id ?? undefined,
      now: new Date(),
    });
    if (health.reason) return { ...health, restored: false };
    return { ...health, ...await keepSubscribed(link, token, { config, meta, webhooks }, deadline) };
  } catch (error) {
    const reason = reasonFromGraphError(error);
    if (reason) return { reason, restored: false };
    throw error;
  }
}

/** A stored token its listed key does not decrypt: not the doctor's doing, so never a flag. */
export class TokenUnreadableError extends Error {
  override name = "TokenUnreadableError";
  constructor(readonly keyId: string, options: ErrorOptions) {
    super(`the stored token under key ${keyId} does not decrypt`, options);
  }
}

/** The stored token in the clear; TokenUnreadableError when the key its id names does not open it. */
export async function readToken(
  keyring: TokenKeyring,
  stored: string,
  binding: TokenBinding,
): Promise<string> {
  try {
    return await keyring.decrypt(stored, binding);
  } catch (error) {
    let keyId = "unknown";
    try {
      keyId = keyring.keyIdOf(stored);
    } catch { /* a value in no known format */ }
    throw new TokenUnreadableError(keyId, { cause: error });
  }
}

async function keepSubscribed(
  link: LeasedLink,
  token: string,
  { config, meta, webhooks }: { config: MaintenanceConfig; meta: MetaGraph; webhooks: LinkWebhooks },
  deadline: AbortSignal,
): Promise<{ restored: boolean; reason?: LinkStatusReason }> {
  const fields = config.webhooks.pageFields;
  if (fields.length === 0) return { restored: false };
  const ours = (await meta.pageSubscriptions(link.page_id, token, deadline)).find((app) =>
    app.appId === config.meta.facebook?.appId
  );
  if (ours && fields.every((field) => ours.fields.includes(field))) return { restored: false };
  return await restore(link, webhooks, deadline, {
    reasonOf: reasonFromGraphError,
    lost: "subscription_lost",
  });
}

/**
 * A missing subscription, converged rather than written: if the link changed meanwhile (a disconnect,
 * a move), converge sees it and leaves Meta as the database says. Meta's refusal counts only when it
 * was about this link's own token (another holder's is that link's business: its own check finds it):
 * the reason its error gives, else `lost`; a failure that may pass is thrown.
 */
async function restore(
  link: LeasedLink,
  webhooks: LinkWebhooks,
  deadline: AbortSignal,
  refused: { reasonOf: (error: unknown) => LinkStatusReason | undefined; lost: LinkStatusReason },
): Promise<{ restored: boolean; reason?: LinkStatusReason }> {
  const mine = storedLink(link.doctor_id, link);
  const converged = await webhooks.converge(mine, deadline, { flag: false });
  const own = converged.holder?.doctorId === mine.doctorId &&
    converged.holder.encryptedToken === mine.encryptedToken;
  const error = own ? converged.error : undefined;
  if (!error) return { restored: converged.subscribed && !converged.error };
  const reason = refused.reasonOf(error);
  if (reason) return { restored: false, reason };
  if (mayPass(error)) throw error;
  return { restored: false, reason: refused.lost };
}

/** Meta down, throttled or slow: worth another run rather than a flag the doctor sees. */
function mayPass(error: unknown): boolean {
  if (!(error instanceof AppError)) return true;
  const status = (error.cause as { status?: number } | undefined)?.status;
  return error.code === "meta_rate_limited" || error.code === "meta_timeout" || status === undefined ||
    status >= 500;
}

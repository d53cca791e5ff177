// One link's check at Meta, with the Page token it holds (decrypted here, never logged):
// 1. debug_token (as the app): still valid, still this Page's token for this app, with the permissions
//    a link needs, and when data access ends (link_health.ts maps each answer to a reason, with its
//    source);
// 2. the Page's subscribed apps: a missing subscription, or missing fields, is restored with the Page
//    fields the link uses; only when Meta refuses that is the link flagged (subscription_lost, or the
//    reason Meta's error gives).
// A refusal that says the token is dead (190, a lost permission) is an outcome; a failure that may pass
// (Meta down, throttled, timed out) is thrown, so nothing is recorded and the next run tries again.
import type { TokenBinding, TokenKeyring } from "../_shared/crypto/page_token.ts";
import type { Database, LeasedLink } from "../_shared/database.ts";
import { AppError } from "../_shared/errors.ts";
import type { MetaGraph } from "../_shared/meta/graph.ts";
import { assessPageToken, type LinkStatusReason, reasonFromGraphError } from "../_shared/meta/link_health.ts";
import type { MaintenanceConfig } from "./deps.ts";

export interface LinkHealth {
  /** None: the link is active. */
  reason?: LinkStatusReason;
  reconnectBy?: Date;
  tokenExpiresAt?: Date;
  /** The Page's subscription was missing (or lacked fields) and is back. */
  restored: boolean;
}

export async function checkLink(
  link: LeasedLink,
  { config, keyring, meta }: { config: MaintenanceConfig; keyring: TokenKeyring; meta: MetaGraph },
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
    return { ...health, ...await keepSubscribed(link.page_id, token, config, meta, deadline) };
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
  pageId: string,
  token: string,
  config: MaintenanceConfig,
  meta: MetaGraph,
  deadline: AbortSignal,
): Promise<{ restored: boolean; reason?: LinkStatusReason }> {
  const fields = config.webhooks.pageFields;
  if (fields.length === 0) return { restored: false };
  const ours = (await meta.pageSubscriptions(pageId, token, deadline)).find((app) =>
    app.appId === config.meta.facebook?.appId
  );
  if (ours && fields.every((field) => ours.fields.includes(field))) return { restored: false };
  try {
    await meta.subscribePage(pageId, token, fields, deadline);
    return { restored: true };
  } catch (error) {
    const reason = reasonFromGraphError(error);
    if (reason) return { restored: false, reason };
    if (mayPass(error)) throw error;
    return { restored: false, reason: "subscription_lost" };
  }
}

/** Meta down, throttled or slow: worth another run rather than a flag the doctor sees. */
function mayPass(error: unknown): boolean {
  if (!(error instanceof AppError)) return true;
  const status = (error.cause as { status?: number } | undefined)?.status;
  return error.code === "meta_rate_limited" || error.code === "meta_timeout" || status === undefined ||
    status >= 500;
}

/**
 * After an outcome was dropped as stale (the link was disconnected, moved to another Page, reconnected or
 * flagged during the check): a subscription this check restored is taken back when nobody holds the Page
 * any more, so Meta does not go on sending a disconnected doctor's messages. A Page someone holds keeps
 * it (they need it; the disconnect in progress, if any, unsubscribes after its delete).
 */
export async function withdrawRestore(
  link: LeasedLink,
  { config, keyring, meta, db }: {
    config: MaintenanceConfig;
    keyring: TokenKeyring;
    meta: MetaGraph;
    db: Database;
  },
): Promise<boolean> {
  if (await db.pageHolderToResubscribe(link.page_id)) return false;
  const token = await readToken(keyring, link.access_token, {
    doctorId: link.doctor_id,
    pageId: link.page_id,
  });
  await meta.unsubscribePage(link.page_id, token, AbortSignal.timeout(config.meta.requestDeadlineMs));
  return true;
}

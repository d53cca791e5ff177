// The functions' whole use of the database: service-role RPCs (see supabase/migrations) through the
// Data API. The client is @supabase/postgrest-js, the PostgREST client inside supabase-js, created once
// per instance with the project's secret key: these functions need RPCs only, and supabase-js would
// add auth, storage, realtime and functions clients to every cold start. Every call has a timeout, so
// a stalled database answers 503 instead of hanging the doctor's browser.
import { PostgrestClient } from "@supabase/postgrest-js";
import type { Config } from "./config.ts";
import { AppError, isErrorCode } from "./errors.ts";

/** A Page as a pending connection keeps it; `access_token` is encrypted (crypto/page_token.ts). */
export interface PendingPage {
  page_id: string;
  page_name?: string;
  instagram_account_id: string;
  instagram_username?: string;
  access_token: string;
}

/** Which way a link was made: `page` = Facebook Login (a Page), `instagram_user` = Instagram Login. */
export type TokenKind = "page" | "instagram_user";

/**
 * The one account an Instagram Login pending connection keeps (no Page). `instagram_account_id` is /me's
 * `user_id` (the professional account id webhooks carry), `instagram_user_id` /me's app-scoped `id`;
 * both numeric strings, never JS numbers. `access_token` is encrypted, bound to the doctor and the account.
 */
export interface PendingInstagramAccount {
  instagram_account_id: string;
  instagram_user_id: string;
  instagram_username?: string;
  access_token: string;
  /** ISO 8601: when Meta says the long-lived token expires. */
  token_expires_at?: string;
}

/** What finish may show the doctor: never a token; `taken` when another doctor holds the Page (never who). */
export type OfferedPage = Pick<PendingPage, "page_id" | "page_name" | "instagram_username"> & {
  taken?: true;
};

export type OpenedPendingConnection =
  | { outcome: "session_mismatch" }
  | { outcome: "choose"; pages: OfferedPage[]; expires_at: string }
  | {
    outcome: "ready";
    token_kind?: TokenKind;
    /**
     * The Page to link, or for token_kind `instagram_user` the account (a PendingInstagramAccount: no
     * `page_id`; read `token_kind` first). One type so that the Page path's callers compile unchanged.
     */
    page: PendingPage & Partial<PendingInstagramAccount>;
    /** The link the doctor holds and would leave: another account, or this one through the other path. */
    leaving?: LeavingLink;
  };

/**
 * The doctor's current link that a finish replaces (another account, or the same account through the
 * other path): its subscription is removed before the link. `page_id` is absent for an Instagram Login
 * link (token_kind `instagram_user`); read `token_kind` first.
 */
export type LeavingLink = StoredPageToken & {
  token_kind?: TokenKind;
  instagram_account_id?: string;
};

/** A Page id with its encrypted token, as the database keeps it. */
export interface StoredPageToken {
  page_id: string;
  access_token: string;
}

export interface PendingConnectionRef {
  doctorId: string;
  tokenHash: string;
  pageId?: string;
  correlationId: string;
}

export interface LinkedAccount {
  doctor_id: string;
  /** Null for an Instagram Login link. */
  instagram_page_id: string | null;
  instagram_username: string | null;
  page_name: string | null;
  instagram_business_account_id: string | null;
  facebook_user_id: string | null;
  granted_scopes: string[] | null;
  connected_at: string;
  previous_page_id: string | null;
  token_kind?: TokenKind;
  /** Instagram Login's app-scoped user id; null for a Page link. */
  instagram_user_id?: string | null;
  /** ISO 8601; set for an Instagram Login link. */
  token_expires_at?: string | null;
  status?: "active" | "needs_reconnect";
  previous_instagram_account_id?: string | null;
  previous_token_kind?: TokenKind | null;
}

/** What the function needs to clean up at Meta before a disconnect. */
export interface LinkToDisconnect {
  /** A maintenance run holds the link (its lease): it may still write to Meta. */
  leased: boolean;
  /** Until when that run's lease ran (ISO 8601): it may write to Meta until then. */
  leased_until: string | null;
  /** That run's lease id: the run revokes at its own end. */
  leased_by: string | null;
  /** Absent (null) for an Instagram Login link: read `token_kind` first. */
  page_id: string;
  access_token: string;
  facebook_user_id: string | null;
  /** Another doctor's link uses the same Facebook user: their grant must stay. */
  facebook_user_shared: boolean;
  token_kind?: TokenKind;
  instagram_account_id?: string | null;
}

/** What disconnect_doctor_instagram() deleted. */
export type DisconnectedLink = StoredPageToken & {
  token_kind?: TokenKind;
  instagram_account_id?: string | null;
  facebook_user_id?: string | null;
};

export interface MetaOutcome {
  unsubscribed: boolean;
  /** "deferred": left to the next maintenance run (pending_revokes), a run held the link. */
  revoked: boolean | "skipped" | "deferred";
}

/** A webhook subscription's version and the link that holds it (12_subscriptions.sql). */
export interface SubscriptionTarget {
  version: number;
  holder: { doctor_id: string; access_token: string } | null;
}

export interface ForgottenUser {
  links_deleted: number;
  pending_connections_deleted: number;
  states_deleted: number;
}

export interface DataDeletionRequest {
  confirmation_code: string;
  status: "received" | "completed";
  requested_at?: string;
  completed_at?: string | null;
  replay?: boolean;
  /** Stored webhook events the request removed. */
  events_deleted?: number;
}

/** What store_instagram_events() did with one delivery. */
export interface StoredWebhookBatch {
  stored: number;
  duplicates: number;
  /** Events for accounts no doctor holds: counted, not stored. */
  unknown_account_events: number;
  /** Events for links made through the other app's path (signed with the wrong secret): counted, not stored. */
  wrong_app_events?: number;
  unsends: number;
}

/** The app whose secret signed a webhook delivery: the Facebook app, or the Instagram (Login) app. */
export type WebhookApp = "facebook" | "instagram";

/** A link leased by one maintenance run (lease_instagram_links). `access_token` is as stored. */
export interface LeasedLink {
  doctor_id: string;
  /** Null for an Instagram Login link: read `token_kind` first. */
  page_id: string;
  instagram_account_id: string | null;
  access_token: string;
  token_kind: TokenKind;
  status: "active" | "needs_reconnect";
  status_reason: string | null;
  /** ISO 8601, or null when Meta reported no expiry. */
  token_expires_at?: string | null;
  /** ISO 8601: when the Instagram Login token was obtained or last refreshed (null for a Page token). */
  token_refreshed_at?: string | null;
}

/** A refreshed Instagram Login token to store under this run's lease (compare-and-swap on `oldToken`). */
export interface TokenRefresh {
  doctorId: string;
  leaseId: string;
  /** The token as stored when the run leased the link. */
  oldToken: string;
  /** The new token, encrypted (bound to the doctor and the account). */
  newToken: string;
  expiresAt: Date;
}

/** What one check found: no reason means active. */
export interface LinkCheck {
  doctorId: string;
  leaseId: string;
  /** The stored token the check used: the outcome is dropped if the link holds another by now. */
  checkedToken: string;
  reason?: string;
  reconnectBy?: Date;
  tokenExpiresAt?: Date;
  correlationId: string;
}

/** A link's token as stored, with the doctor and Page it is bound to (or, without a Page, the account). */
export interface StoredLinkToken {
  doctor_id: string;
  /** Null for an Instagram Login link: its token is bound to `instagram_account_id`. */
  page_id: string;
  access_token: string;
  token_kind?: TokenKind;
  instagram_account_id?: string | null;
}

/**
 * Stored Page tokens per encryption key (token_key_usage(), 10_token_keys.sql): `legacy` for v1 values,
 * null for a value in no format the functions read (they never write one).
 */
export interface TokenKeyUsage {
  key_id: string | null;
  /** In public.doctor_instagram. */
  link_tokens: number;
  /** In the pages of pending connections that can still be finished. */
  pending_tokens: number;
}

export interface Database {
  createOAuthState(doctorId: string, nonceHash: string, expiresAt: Date): Promise<void>;
  /** One attempt per state: throws state_* unless this call is the first use. */
  claimOAuthState(doctorId: string, nonceHash: string): Promise<void>;
  /** Returns the pending connection's expiry (ISO 8601). */
  createPendingConnection(input: {
    tokenHash: string;
    doctorId: string;
    pages: PendingPage[];
    facebookUserId: string;
    grantedScopes: string[];
  }): Promise<string>;
  /** Instagram Login's pending connection (one account, no Page); returns its expiry (ISO 8601). */
  createInstagramPendingConnection(input: {
    tokenHash: string;
    doctorId: string;
    account: PendingInstagramAccount;
    grantedScopes: string[];
  }): Promise<string>;
  openPendingConnection(ref: PendingConnectionRef): Promise<OpenedPendingConnection>;
  /** `pageId` undefined for an Instagram Login connection. */
  linkPendingConnection(ref: PendingConnectionRef & { pageId: string | undefined }): Promise<LinkedAccount>;
  /** Marks the link as leaving for `fenceSeconds`; throws not_connected when the doctor has no link. */
  prepareDisconnect(doctorId: string, fenceSeconds: number): Promise<LinkToDisconnect>;
  /** Deletes the doctor's link, whatever Page it holds by now; what was deleted, or null if nothing. */
  disconnect(doctorId: string, meta: MetaOutcome, correlationId: string): Promise<DisconnectedLink | null>;
  /** Removes what the Facebook user had granted when Meta issued the request (`issuedAt`). */
  forgetFacebookUser(
    facebookUserId: string,
    action: "instagram.deauthorized",
    issuedAt: Date,
    correlationId: string,
  ): Promise<ForgottenUser>;
  /** forgetFacebookUser() for the Instagram app's callbacks: matches the Instagram user id or the account id. */
  forgetInstagramUser(
    instagramUserId: string,
    action: "instagram.deauthorized",
    issuedAt: Date,
    correlationId: string,
  ): Promise<ForgottenUser>;
  requestInstagramDataDeletion(input: {
    instagramUserId: string;
    requestKey: string;
    confirmationCode: string;
    issuedAt: Date;
    correlationId: string;
  }): Promise<DataDeletionRequest>;
  requestDataDeletion(input: {
    facebookUserId: string;
    requestKey: string;
    confirmationCode: string;
    issuedAt: Date;
    correlationId: string;
  }): Promise<DataDeletionRequest>;
  /** Throws deletion_request_unknown. */
  dataDeletionStatus(confirmationCode: string): Promise<DataDeletionRequest>;
  /**
   * One webhook delivery, stored whole (one transaction) for the doctors its accounts belong to, under
   * the app whose secret signed it: only entries of links made through that app's path are stored.
   */
  storeWebhookEvents(
    object: "instagram" | "page",
    entries: unknown[],
    app?: WebhookApp,
  ): Promise<StoredWebhookBatch>;
  /** Up to `limit` links, least recently checked first, leased to `leaseId` for a few minutes. */
  leaseLinks(leaseId: string, limit: number, seconds: number): Promise<LeasedLink[]>;
  recordLinkCheck(check: LinkCheck): Promise<"unchanged" | "status_changed" | "stale">;
  /** Stores a refreshed Instagram Login token; 'stale' when the link holds another token or lease. */
  recordTokenRefresh(refresh: TokenRefresh): Promise<"refreshed" | "stale">;
  /** Ends the leases of links this run did not record. */
  releaseLinks(leaseId: string): Promise<number>;
  /** Flags the link needs_reconnect while it still holds `storedToken`; whether this call flagged it. */
  flagLink(doctorId: string, storedToken: string, reason: string, correlationId: string): Promise<boolean>;
  /** The version of a Page's (`page`) or an Instagram account's subscription, and who holds it. */
  subscriptionTarget(tokenKind: TokenKind, objectId: string): Promise<SubscriptionTarget>;
  /** Leaves the Facebook user's revoke to maintenance: to the run of `afterLease` at its end, to any from `notBefore`. */
  deferRevoke(facebookUserId: string, notBefore: Date | string, afterLease?: string | null): Promise<void>;
  /** Revokes due for the run of `leaseId`, of Facebook users nobody uses any more, each claimed for an hour. */
  takePendingRevokes(leaseId: string): Promise<string[]>;
  /** Meta confirmed (or knows no such user): the revoke is done. */
  completePendingRevoke(facebookUserId: string): Promise<void>;
  linksToReencrypt(primaryKeyId: string, limit: number): Promise<StoredLinkToken[]>;
  /** Stores each `to` while the link still holds `from`; how many were stored. */
  reencryptTokens(
    tokens: { doctor_id: string; from: string; to: string }[],
    correlationId: string,
  ): Promise<number>;
  /** Expired states and pending connections, and webhook events past their retention. */
  runSweeps(eventRetentionDays: number): Promise<{ purged_events: number }>;
  /** How many stored tokens each key id encrypts, for key rotation (crypto/token_key_usage.ts). */
  tokenKeyUsage(): Promise<TokenKeyUsage[]>;
}

export interface RpcError {
  code?: string;
  message?: string;
  details?: string | null;
  hint?: string | null;
}

export function createDatabase(config: Config<"database">): Database {
  const key = config.database.secretKey;
  const client = new PostgrestClient(`${config.database.url}/rest/v1`, {
    // As supabase-js sends it: new-format keys (sb_secret_...) only as apikey, legacy JWT keys also as
    // the bearer token.
    headers: { apikey: key, ...(key.startsWith("sb_") ? {} : { Authorization: `Bearer ${key}` }) },
    fetch: (input, init) => fetch(input, { ...init, signal: AbortSignal.timeout(config.database.timeoutMs) }),
  });

  async function rpc<T>(name: string, args: Record<string, unknown>): Promise<T> {
    const { data, error, status } = await client.rpc(name, args);
    if (error) throw toAppError(error, status);
    return data as T;
  }

  const pendingArgs = (ref: PendingConnectionRef) => ({
    p_doctor_id: ref.doctorId,
    p_token_hash: ref.tokenHash,
    p_page_id: ref.pageId ?? null,
    p_correlation_id: ref.correlationId,
  });

  return {
    createOAuthState: (doctorId, nonceHash, expiresAt) =>
      rpc("create_oauth_state", {
        p_doctor_id: doctorId,
        p_nonce_hash: nonceHash,
        p_expires_at: expiresAt.toISOString(),
      }),
    claimOAuthState: (doctorId, nonceHash) =>
      rpc("claim_oauth_state", { p_doctor_id: doctorId, p_nonce_hash: nonceHash }),
    createPendingConnection: (input) =>
      rpc("create_pending_connection", {
        p_token_hash: input.tokenHash,
        p_doctor_id: input.doctorId,
        p_pages: input.pages,
        p_facebook_user_id: input.facebookUserId,
        p_granted_scopes: input.grantedScopes,
      }),
    createInstagramPendingConnection: (input) =>
      rpc("create_instagram_pending_connection", {
        p_token_hash: input.tokenHash,
        p_doctor_id: input.doctorId,
        p_account: input.account,
        p_granted_scopes: input.grantedScopes,
      }),
    openPendingConnection: (ref) => rpc("open_pending_connection", pendingArgs(ref)),
    linkPendingConnection: (ref) => rpc("link_pending_connection", pendingArgs(ref)),
    prepareDisconnect: (doctorId, fenceSeconds) =>
      rpc("prepare_disconnect", { p_doctor_id: doctorId, p_fence_seconds: fenceSeconds }),
    disconnect: (doctorId, meta, correlationId) =>
      rpc("disconnect_doctor_instagram", {
        p_doctor_id: doctorId,
        p_meta: meta,
        p_correlation_id: correlationId,
      }),
    forgetFacebookUser: (facebookUserId, action, issuedAt, correlationId) =>
      rpc("forget_facebook_user", {
        p_facebook_user_id: facebookUserId,
        p_action: action,
        p_issued_at: issuedAt.toISOString(),
        p_correlation_id: correlationId,
      }),
    forgetInstagramUser: (instagramUserId, action, issuedAt, correlationId) =>
      rpc("forget_instagram_user", {
        p_instagram_user_id: instagramUserId,
        p_action: action,
        p_issued_at: issuedAt.toISOString(),
        p_correlation_id: correlationId,
      }),
    requestInstagramDataDeletion: (input) =>
      rpc("request_instagram_data_deletion", {
        p_instagram_user_id: input.instagramUserId,
        p_request_key: input.requestKey,
        p_confirmation_code: input.confirmationCode,
        p_issued_at: input.issuedAt.toISOString(),
        p_correlation_id: input.correlationId,
      }),
    requestDataDeletion: (input) =>
      rpc("request_data_deletion", {
        p_facebook_user_id: input.facebookUserId,
        p_request_key: input.requestKey,
        p_confirmation_code: input.confirmationCode,
        p_issued_at: input.issuedAt.toISOString(),
        p_correlation_id: input.correlationId,
      }),
    dataDeletionStatus: (confirmationCode) =>
      rpc("data_deletion_status", { p_confirmation_code: confirmationCode }),
    storeWebhookEvents: (object, entries, app = "facebook") =>
      rpc("store_instagram_events", { p_object: object, p_entries: entries, p_app: app }),
    leaseLinks: (leaseId, limit, seconds) =>
      rpc("lease_instagram_links", { p_lease_id: leaseId, p_limit: limit, p_lease_seconds: seconds }),
    recordLinkCheck: (check) =>
      rpc("record_instagram_link_check", {
        p_doctor_id: check.doctorId,
        p_lease_id: check.leaseId,
        p_checked_token: check.checkedToken,
        p_reason: check.reason ?? null,
        p_reconnect_by: check.reconnectBy?.toISOString() ?? null,
        p_token_expires_at: check.tokenExpiresAt?.toISOString() ?? null,
        p_correlation_id: check.correlationId,
      }),
    recordTokenRefresh: (refresh) =>
      rpc("record_instagram_token_refresh", {
        p_doctor_id: refresh.doctorId,
        p_lease_id: refresh.leaseId,
        p_old_token: refresh.oldToken,
        p_new_token: refresh.newToken,
        p_expires_at: refresh.expiresAt.toISOString(),
      }),
    releaseLinks: (leaseId) => rpc("release_instagram_links", { p_lease_id: leaseId }),
    flagLink: (doctorId, storedToken, reason, correlationId) =>
      rpc("flag_instagram_link", {
        p_doctor_id: doctorId,
        p_stored_token: storedToken,
        p_reason: reason,
        p_correlation_id: correlationId,
      }),
    subscriptionTarget: (tokenKind, objectId) =>
      rpc("subscription_target", { p_token_kind: tokenKind, p_object_id: objectId }),
    deferRevoke: (facebookUserId, notBefore, afterLease) =>
      rpc("defer_revoke", {
        p_facebook_user_id: facebookUserId,
        p_not_before: notBefore,
        p_after_lease: afterLease ?? null,
      }),
    takePendingRevokes: (leaseId) => rpc("take_pending_revokes", { p_lease_id: leaseId }),
    completePendingRevoke: (facebookUserId) =>
      rpc("complete_pending_revoke", { p_facebook_user_id: facebookUserId }),
    linksToReencrypt: (primaryKeyId, limit) =>
      rpc("links_to_reencrypt", { p_primary_key_id: primaryKeyId, p_limit: limit }),
    reencryptTokens: (tokens, correlationId) =>
      rpc("reencrypt_instagram_tokens", { p_tokens: tokens, p_correlation_id: correlationId }),
    runSweeps: (eventRetentionDays) =>
      rpc("run_instagram_sweeps", { p_event_retention_days: eventRetentionDays }),
    tokenKeyUsage: () => rpc("token_key_usage", {}),
  };
}

/** Seconds a client should wait after database_unavailable: the catalogue's sentence says "in a minute". */
export const DATABASE_RETRY_AFTER_SECONDS = 60;

/**
 * SQLSTATEs (PostgreSQL, "Appendix A. PostgreSQL Error Codes") that mean the database cannot write or
 * answer now, whatever HTTP status PostgREST gave them: its table ("Errors", HTTP Status Codes) answers
 * 25006 with 405, class 57 with 500 and 08 and 53 with 503, so the status alone would call a read-only
 * database (Supabase's disk-full mode) a bug. 08xxx, any connection exception, is matched by its class.
 */
const UNAVAILABLE_SQLSTATES = new Set([
  "25006", // read_only_sql_transaction: read-only mode, a standby
  "53000", // insufficient_resources
  "53100", // disk_full
  "53200", // out_of_memory
  "53300", // too_many_connections
  "57014", // query_canceled: statement_timeout, the server's side of our own request timeout
  "57P01", // admin_shutdown
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now: starting up, shutting down, recovering
  "58030", // io_error: the disk failed a read or write
  "40001", // serialization_failure: another transaction won; the same request may pass now
  "40P01", // deadlock_detected: likewise
  "55P03", // lock_not_available: a lock timeout
]);

/**
 * PostgREST's own codes for a database it cannot reach ("Errors", PostgREST error codes, group 0):
 * PGRST000 could not connect, PGRST001 internal connection error, PGRST002 schema cache not built,
 * PGRST003 timed out acquiring a connection from the pool.
 */
const UNREACHABLE_PGRST = /^PGRST00[0-3]$/;

/**
 * Maps PostgREST's error to what the caller sees. Our SQL raises SQLSTATE PTxyz (PostgREST answers
 * HTTP xyz) with the error code in DETAIL; a 429 carries the seconds to wait in HINT, and a 409 a
 * message that names the Page or the Instagram account. Any other error is mapped by its SQLSTATE; only an answer without one
 * (no answer at all, status 0 after our timeout; or a proxy in front of PostgREST) by its HTTP status.
 */
export function toAppError(error: RpcError, status: number): AppError {
  const code = error.code ?? "";
  const cause = { sqlstate: code || undefined, status, message: error.message };
  if (/^PT\d{3}$/.test(code) && isErrorCode(error.details)) {
    return new AppError(error.details, {
      cause,
      message: error.details === "page_already_linked" || error.details === "account_already_linked"
        ? error.message
        : undefined,
      retryAfterSeconds: error.details === "too_many_requests" ? Number(error.hint) || 60 : undefined,
    });
  }
  // A JWT whose user no longer exists in auth.users (foreign key on the state's doctor).
  if (code === "23503") return new AppError("unauthorized", { cause });
  const unavailable = code
    ? UNAVAILABLE_SQLSTATES.has(code) || code.startsWith("08") || UNREACHABLE_PGRST.test(code)
    : status === 0 || status >= 500;
  if (unavailable) {
    return new AppError("database_unavailable", { cause, retryAfterSeconds: DATABASE_RETRY_AFTER_SECONDS });
  }
  return new AppError("internal_error", { cause });
}

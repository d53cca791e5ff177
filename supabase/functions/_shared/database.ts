// The functions' whole use of the database: service-role RPCs (see supabase/migrations). The client
// is created once per instance with @supabase/server's createAdminClient, and every call has a
// timeout, so a stalled database answers 503 instead of hanging the doctor's browser.
import { createAdminClient } from "@supabase/server/core";
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

/** What finish may show the doctor: never a token. */
export type OfferedPage = Pick<PendingPage, "page_id" | "page_name" | "instagram_username">;

export type OpenedPendingConnection =
  | { outcome: "session_mismatch" }
  | { outcome: "choose"; pages: OfferedPage[]; expires_at: string }
  | { outcome: "ready"; page: PendingPage };

export interface PendingConnectionRef {
  doctorId: string;
  tokenHash: string;
  pageId?: string;
  correlationId: string;
}

export interface LinkedAccount {
  doctor_id: string;
  instagram_page_id: string;
  instagram_username: string | null;
  page_name: string | null;
  instagram_business_account_id: string | null;
  connected_at: string;
  previous_page_id: string | null;
}

export interface Database {
  createOAuthState(doctorId: string, nonceHash: string, expiresAt: Date): Promise<void>;
  /** One attempt per state: throws state_* unless this call is the first use. */
  claimOAuthState(doctorId: string, nonceHash: string): Promise<void>;
  /** Returns the pending connection's expiry (ISO 8601). */
  createPendingConnection(tokenHash: string, doctorId: string, pages: PendingPage[]): Promise<string>;
  openPendingConnection(ref: PendingConnectionRef): Promise<OpenedPendingConnection>;
  linkPendingConnection(ref: PendingConnectionRef & { pageId: string }): Promise<LinkedAccount>;
}

interface RpcError {
  code?: string;
  message?: string;
  details?: string | null;
  hint?: string | null;
}

export function createDatabase(config: Config): Database {
  const client = createAdminClient({
    env: { url: config.supabase.url, secretKeys: config.supabase.secretKeys },
    supabaseOptions: {
      global: {
        fetch: (input, init) => fetch(input, { ...init, signal: AbortSignal.timeout(config.dbTimeoutMs) }),
      },
    },
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
    createPendingConnection: (tokenHash, doctorId, pages) =>
      rpc("create_pending_connection", { p_token_hash: tokenHash, p_doctor_id: doctorId, p_pages: pages }),
    openPendingConnection: (ref) => rpc("open_pending_connection", pendingArgs(ref)),
    linkPendingConnection: (ref) => rpc("link_pending_connection", pendingArgs(ref)),
  };
}

/**
 * Maps PostgREST's error to what the caller sees. Our SQL raises SQLSTATE PTxyz (PostgREST answers
 * HTTP xyz) with the error code in DETAIL; a 429 carries the seconds to wait in HINT, and a 409 a
 * message that names the Page.
 */
function toAppError(error: RpcError, status: number): AppError {
  const cause = { sqlstate: error.code, status, message: error.message };
  if (/^PT\d{3}$/.test(error.code ?? "") && isErrorCode(error.details)) {
    return new AppError(error.details, {
      cause,
      message: error.details === "page_already_linked" ? error.message : undefined,
      retryAfterSeconds: error.details === "too_many_requests" ? Number(error.hint) || 60 : undefined,
    });
  }
  // A JWT whose user no longer exists in auth.users (foreign key on the state's doctor).
  if (error.code === "23503") return new AppError("unauthorized", { cause });
  if (status === 0 || status >= 500 || error.code?.startsWith("08") || error.code === "57P03") {
    return new AppError("database_unavailable", { cause });
  }
  return new AppError("internal_error", { cause });
}

// The functions' whole use of the database: three service-role RPCs (see supabase/migrations).
// The client is created once per instance with @supabase/server's createAdminClient, and every call
// has a timeout, so a stalled database answers 503 instead of hanging the doctor's browser.
import { createAdminClient } from "@supabase/server/core";
import type { Config } from "./config.ts";
import { AppError, isErrorCode } from "./errors.ts";

export interface LinkInput {
  doctorId: string;
  nonceHash: string;
  pageId: string;
  encryptedToken: string;
  pageName?: string;
  instagramUsername?: string;
  instagramAccountId?: string;
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
  checkOAuthState(doctorId: string, nonceHash: string): Promise<void>;
  linkDoctorInstagram(input: LinkInput): Promise<LinkedAccount>;
}

interface RpcError {
  code?: string;
  message?: string;
  details?: string | null;
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

  return {
    createOAuthState: (doctorId, nonceHash, expiresAt) =>
      rpc("create_oauth_state", {
        p_doctor_id: doctorId,
        p_nonce_hash: nonceHash,
        p_expires_at: expiresAt.toISOString(),
      }),
    checkOAuthState: (doctorId, nonceHash) =>
      rpc("check_oauth_state", { p_doctor_id: doctorId, p_nonce_hash: nonceHash }),
    linkDoctorInstagram: (input) =>
      rpc("link_doctor_instagram", {
        p_doctor_id: input.doctorId,
        p_nonce_hash: input.nonceHash,
        p_page_id: input.pageId,
        p_access_token: input.encryptedToken,
        p_page_name: input.pageName ?? null,
        p_instagram_username: input.instagramUsername ?? null,
        p_instagram_business_account_id: input.instagramAccountId ?? null,
        p_correlation_id: input.correlationId,
      }),
  };
}

/** Maps PostgREST's error (SQLSTATE in `code`, our reason in `details`) to what the caller sees. */
function toAppError(error: RpcError, status: number): AppError {
  const cause = { code: error.code, status, message: error.message };
  if (error.code === "PT400" && isErrorCode(error.details)) return new AppError(error.details, { cause });
  if (error.code === "PT409" || error.code === "23505") {
    return new AppError("page_already_linked", {
      message: error.code === "PT409" ? error.message : undefined,
      cause,
    });
  }
  // A JWT whose user no longer exists in auth.users (foreign key on the state's doctor).
  if (error.code === "23503") return new AppError("unauthorized", { cause });
  if (status === 0 || status >= 500 || error.code?.startsWith("08") || error.code === "57P03") {
    return new AppError("database_unavailable", { cause });
  }
  return new AppError("internal_error", { cause });
}

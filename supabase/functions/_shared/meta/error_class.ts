// What a Graph API failure means for us, from Meta's "Handling Errors" guide: whether trying again can
// help, and what the doctor is told. Codes are Graph's `error.code`.
//   190 (any subcode)                  the token is dead: the doctor must connect again
//   10, 200-299                        a permission is missing: connect again and allow it
//   4, 17, 32, 613, 80001-80009        rate limited: retried, then "try later" (503, Retry-After)
//   is_transient                       likewise
//   1, 2, 341, HTTP 5xx, no answer     Meta failed: retried, then 502
//   100 / "code verifier" at the code exchange: the code is used, expired or another flow's
// debug_token is different: it answers 200 with the inspected token's own error in `data.error`
// ("Debug Token": "Any error that a request to the graph api would return due to the access token"), so
// a Graph error there is about the app token we sent, not the doctor's:
//   190 at debug_token                 our app token ({app-id}|{app-secret}) was refused: the app's
//                                      configuration is wrong, no link is to blame (meta_error)
//   100 "did not match the Viewing App" the inspected token was issued to another app (quoted in many
//                                      public clients, e.g. "(#100) The App_id in the input_token did not
//                                      match the Viewing App"): the token is not ours (reason other_app)
import * as z from "zod/mini";
import { AppError, type ErrorCode } from "../errors.ts";

export type GraphStep =
  | "code_exchange"
  | "token_exchange"
  | "read_user"
  | "subscribe_page"
  | "unsubscribe_page"
  | "revoke_permissions"
  | "debug_token"
  | "read_subscriptions"
  // Instagram Login (instagram_login.ts), on graph.instagram.com: Graph's error body and codes.
  | "ig_token_exchange"
  | "ig_read_account"
  | "ig_subscribe"
  | "ig_unsubscribe"
  | "ig_read_subscriptions"
  | "ig_refresh";

const GraphErrorBody = z.object({
  error: z.object({
    message: z.optional(z.string()),
    type: z.optional(z.string()),
    code: z.optional(z.number()),
    error_subcode: z.optional(z.number()),
    is_transient: z.optional(z.boolean()),
    fbtrace_id: z.optional(z.string()),
  }),
});

export interface GraphFailure {
  /** Worth another attempt (when the call may be repeated at all). */
  transient: boolean;
  error: AppError;
  /** For the log line: never a token, only Meta's codes. */
  detail: Record<string, unknown>;
}

const RATE_LIMIT_CODES = new Set([4, 17, 32, 613]);
const SERVER_CODES = new Set([1, 2, 341]);
const DEFAULT_RETRY_AFTER_SECONDS = 60;

export function classifyGraphError(
  step: GraphStep,
  status: number,
  body: unknown,
  headers: Headers,
): GraphFailure {
  const graph = GraphErrorBody.safeParse(body).data?.error;
  const code = graph?.code;
  const detail = {
    status,
    meta_code: code,
    meta_subcode: graph?.error_subcode,
    meta_type: graph?.type,
    fbtrace_id: graph?.fbtrace_id,
  };
  const failure = (
    errorCode: ErrorCode,
    transient: boolean,
    { retryAfterSeconds, reason }: { retryAfterSeconds?: number; reason?: string } = {},
  ): GraphFailure => {
    const said = reason ? { ...detail, reason } : detail;
    return { transient, error: new AppError(errorCode, { retryAfterSeconds, cause: said }), detail: said };
  };

  if (
    step === "code_exchange" && status < 500 && (code === 100 || /code verifier/i.test(graph?.message ?? ""))
  ) {
    return failure("oauth_code_invalid", false);
  }
  if (step === "debug_token" && code === 190) {
    return failure("meta_error", false, { reason: "app_token_refused" });
  }
  if (step === "debug_token" && code === 100 && /did not match the Viewing App/i.test(graph?.message ?? "")) {
    return failure("meta_token_invalid", false, { reason: "other_app" });
  }
  if (code === 190) return failure("meta_token_invalid", false);
  if (code === 10 || (code !== undefined && code >= 200 && code <= 299)) {
    return failure("permissions_missing", false);
  }
  if (
    (code !== undefined && (RATE_LIMIT_CODES.has(code) || (code >= 80001 && code <= 80009))) || status === 429
  ) {
    return failure("meta_rate_limited", true, { retryAfterSeconds: retryAfter(headers) });
  }
  if (status >= 500 || (code !== undefined && SERVER_CODES.has(code))) return failure("meta_error", true);
  if (graph?.is_transient) {
    return failure("meta_rate_limited", true, { retryAfterSeconds: retryAfter(headers) });
  }
  return failure("meta_error", false);
}

/**
 * Meta says how long a throttled app or Page must wait in its usage headers
 * (estimated_time_to_regain_access, in minutes); otherwise a minute.
 */
function retryAfter(headers: Headers): number {
  let minutes = 0;
  for (const name of ["x-business-use-case-usage", "x-page-usage", "x-app-usage"]) {
    for (
      const match of (headers.get(name) ?? "").matchAll(/"estimated_time_to_regain_access"\s*:\s*(\d+)/g)
    ) {
      minutes = Math.max(minutes, Number(match[1]));
    }
  }
  return minutes > 0 ? Math.min(minutes * 60, 24 * 3600) : DEFAULT_RETRY_AFTER_SECONDS;
}

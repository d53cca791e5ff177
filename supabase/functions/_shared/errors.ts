// Every failure a caller can see: a stable code (safe to put in a URL), an HTTP status and a sentence
// for the doctor that says what happened and what to do next. Internal detail goes to the log, never
// into these. The demo dashboard shows these sentences as they are.

const START_AGAIN = "Press Connect Instagram to start again.";
const RELOAD = "Reload the page and try again.";

export const ERRORS = {
  unauthorized: [
    401,
    "Your session has ended. Sign in again, then connect Instagram.",
  ],
  // INSTAGRAM_DOCTOR_CLAIM: signed in, but not one of the accounts the app lets link (README, Who counts
  // as a doctor). A changed app_metadata reaches the session token only at its next refresh.
  not_a_doctor: [
    403,
    "This account is not allowed to connect Instagram. If you are a doctor here, ask whoever manages your practice's accounts to give yours access, then sign out and sign in again.",
  ],
  invalid_request: [400, `The request could not be understood. ${RELOAD}`],
  payload_too_large: [413, `The request was too large. ${RELOAD}`],
  unsupported_media_type: [
    415,
    `The request could not be understood. ${RELOAD}`,
  ],
  method_not_allowed: [405, `The request could not be understood. ${RELOAD}`],
  too_many_requests: [
    429,
    "Too many connection attempts in a short time. Wait a few minutes, then try again.",
  ],
  access_denied: [
    403,
    `You cancelled on Facebook, so nothing was connected. ${START_AGAIN}`,
  ],
  state_invalid: [
    400,
    `This connection attempt could not be verified. ${START_AGAIN}`,
  ],
  state_expired: [
    400,
    `This connection attempt took too long and expired. ${START_AGAIN}`,
  ],
  state_used: [400, `This connection attempt was already used. ${START_AGAIN}`],
  state_unknown: [
    400,
    `This connection attempt is not known to us. ${START_AGAIN}`,
  ],
  state_doctor_mismatch: [
    400,
    `This connection attempt belongs to another account. ${START_AGAIN}`,
  ],
  oauth_code_invalid: [
    400,
    `Facebook did not accept this approval (it was already used, has expired or belongs to another attempt). ${START_AGAIN}`,
  ],
  meta_error: [
    502,
    "Facebook could not complete the connection. Wait a moment, then press Connect Instagram again.",
  ],
  meta_timeout: [
    504,
    "Facebook did not answer in time. Wait a moment, then press Connect Instagram again.",
  ],
  meta_rate_limited: [
    503,
    "Facebook is limiting requests from our app for a while. Wait a few minutes, then press Connect Instagram again.",
  ],
  meta_token_invalid: [
    400,
    `Facebook no longer accepts this connection (the password may have changed or access was removed). ${START_AGAIN}`,
  ],
  permissions_missing: [
    422,
    "Facebook did not grant every permission we need. Press Connect Instagram again: Facebook will ask for the missing ones; allow all of them.",
  ],
  no_pages: [
    422,
    "No Facebook Page was shared. Press Connect Instagram and select your practice's Page when Facebook asks.",
  ],
  page_not_found: [
    422,
    "That Facebook Page was not among the Pages you shared. Press Connect Instagram and select it when Facebook asks.",
  ],
  page_role_insufficient: [
    422,
    "Your role on that Facebook Page does not allow managing its messages. Ask the Page's admin for full control (or at least the moderate task), then press Connect Instagram again.",
  ],
  instagram_account_missing: [
    422,
    "None of the Facebook Pages you shared has an Instagram business or creator account. Connect one to your Page in Instagram's settings, then press Connect Instagram again.",
  ],
  instagram_account_not_professional: [
    422,
    "This Instagram account is a personal account. Switch it to a business or creator account in Instagram's settings, then press Connect Instagram again.",
  ],
  page_already_linked: [
    409,
    "This Facebook Page is already linked to another doctor. They must disconnect it first, or choose another Page.",
  ],
  account_already_linked: [
    409,
    "This Instagram account is already linked to another doctor. They must disconnect it first, or sign in with another Instagram account.",
  ],
  disconnect_in_progress: [
    409,
    "Your Instagram account is being disconnected right now, so nothing was connected. Wait a moment, then connect again.",
  ],
  session_mismatch: [
    403,
    "This connection was started from another doctor's account, so nothing was connected. To connect your own Instagram, press Connect Instagram while signed in as yourself.",
  ],
  pending_unknown: [
    400,
    `This connection is not known to us (it may have been cancelled). ${START_AGAIN}`,
  ],
  pending_expired: [
    400,
    `This connection waited more than 10 minutes for your confirmation. ${START_AGAIN}`,
  ],
  pending_used: [
    400,
    "This connection was already completed. Reload the page to see your current connection.",
  ],
  webhook_subscription_failed: [
    502,
    "Facebook did not let us receive your Instagram messages yet, so nothing was connected. Wait a moment, then press Connect Instagram again.",
  ],
  not_connected: [
    404,
    "No Instagram account is connected, so there is nothing to disconnect.",
  ],
  signed_request_invalid: [
    400,
    "The request from Facebook could not be verified.",
  ],
  webhook_verification_failed: [
    403,
    "The webhook verification request could not be verified.",
  ],
  webhook_signature_invalid: [
    401,
    "The webhook delivery is not signed by the app.",
  ],
  deletion_request_unknown: [
    404,
    "No data deletion request has this confirmation code.",
  ],
  database_unavailable: [
    503,
    "Our service is briefly unavailable and nothing was saved. Try again in a minute.",
  ],
  not_configured: [
    503,
    "Connecting Instagram is not available at the moment. Try again later; if it lasts, contact support.",
  ],
  // The path asked for (Facebook Page or Instagram Login) has no app configured here.
  login_path_not_configured: [
    404,
    "This way of connecting Instagram is not offered here. Use the other Connect button, or contact support.",
  ],
  not_found: [404, "Not found."],
  // instagram-maintenance's callers are schedulers and operators, not doctors.
  secret_key_required: [
    401,
    "This endpoint needs the project's secret key in the apikey header.",
  ],
  token_key_missing: [
    500,
    "Stored tokens use an encryption key that INSTAGRAM_TOKEN_ENCRYPTION_KEYS no longer lists. Put the key back (README, Rotating the token encryption key).",
  ],
  internal_error: [
    500,
    "Something went wrong on our side and nothing was saved. Try again; if it keeps happening, contact support with the reference below.",
  ],
} as const satisfies Record<string, readonly [number, string]>;

export type ErrorCode = keyof typeof ERRORS;

export class AppError extends Error {
  override name = "AppError";
  readonly status: number;
  /** Seconds a client should wait before trying again (sent as Retry-After). */
  readonly retryAfterSeconds?: number;

  /** `message` overrides the catalogue's sentence when the database has a more precise one. */
  constructor(
    readonly code: ErrorCode,
    options: { message?: string; cause?: unknown; retryAfterSeconds?: number } = {},
  ) {
    super(options.message ?? ERRORS[code][1], { cause: options.cause });
    this.status = ERRORS[code][0];
    this.retryAfterSeconds = options.retryAfterSeconds;
  }
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === "string" && Object.hasOwn(ERRORS, value);
}

// Every failure a caller can see: a stable code (safe to put in a URL), an HTTP status and a message
// written for the doctor. Internal detail goes to the log, never into these.

export const ERRORS = {
  unauthorized: [401, "Sign in again: a valid session is required to connect Instagram."],
  invalid_request: [400, "The request is missing a parameter or has a malformed one."],
  access_denied: [403, "Instagram was not connected: the permission request was cancelled."],
  state_invalid: [400, "This sign-in link is not valid. Start the connection again."],
  state_expired: [400, "This sign-in link has expired. Start the connection again."],
  state_used: [400, "This sign-in link was already used. Start the connection again."],
  state_unknown: [400, "This sign-in link is not known. Start the connection again."],
  state_doctor_mismatch: [
    400,
    "This sign-in link was started by another account. Start the connection again.",
  ],
  oauth_code_invalid: [
    400,
    "Meta refused the authorization (it was used or expired). Start the connection again.",
  ],
  meta_error: [502, "Meta could not complete the connection. Try again in a moment."],
  meta_timeout: [504, "Meta did not answer in time. Try again in a moment."],
  no_pages: [422, "No Facebook Page was shared. Choose at least one Page when Meta asks."],
  page_not_found: [422, "The chosen Facebook Page was not among the Pages shared with us."],
  instagram_account_missing: [
    422,
    "The Facebook Page has no Instagram business or creator account connected to it.",
  ],
  page_already_linked: [409, "This Facebook Page is already linked to another doctor."],
  database_unavailable: [503, "The service is temporarily unavailable. Nothing was saved; try again."],
  not_found: [404, "Not found."],
  internal_error: [500, "Something went wrong on our side. Nothing was saved; try again."],
} as const satisfies Record<string, readonly [number, string]>;

export type ErrorCode = keyof typeof ERRORS;

export class AppError extends Error {
  override name = "AppError";
  readonly status: number;

  /** `message` overrides the catalogue's text when the database has a more precise one. */
  constructor(readonly code: ErrorCode, options: { message?: string; cause?: unknown } = {}) {
    super(options.message ?? ERRORS[code][1], { cause: options.cause });
    this.status = ERRORS[code][0];
  }
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === "string" && Object.hasOwn(ERRORS, value);
}

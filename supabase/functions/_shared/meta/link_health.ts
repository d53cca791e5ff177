// Whether a stored link still works, from what Meta answers about it: a Graph error on a call made with
// the link's Page token (reasonFromGraphError) or Meta's debug_token report on that token
// (assessPageToken). Each answer maps to one stable reason code (LINK_STATUS_REASONS); the database holds what each
// says to the doctor. Pure: no I/O, so instagram-maintenance and any function that hits a 190 share one mapping.
//
// Every mapping names the Meta document (or the quoted real answer) it comes from, or says "guess".
import { AppError } from "../errors.ts";
import type { DebugToken } from "./graph.ts";

/**
 * The reasons a link needs the doctor to connect again. The codes are stable: the database keeps them
 * (CHECK doctor_instagram_status_reason) and holds the sentence the doctor reads for each
 * (public.instagram_link_status_reasons, 01_doctor_instagram.sql); maintenance_test checks the two agree.
 */
export const LINK_STATUS_REASONS = [
  "token_expired",
  "password_changed",
  "app_removed",
  "token_invalid",
  "page_role_lost",
  "account_checkpointed",
  "data_access_expired",
  "permissions_missing",
  "page_token_mismatch",
  "subscription_lost",
  // Instagram Login links' own reasons (the database takes only these for them, and never for a Page
  // link: CHECK doctor_instagram_reason_matches_kind), so the doctor never reads about a Page they lack.
  "instagram_token_expired",
  "instagram_refresh_failed",
  "instagram_token_invalid",
  "instagram_permissions_missing",
  "instagram_subscription_lost",
] as const;

export type LinkStatusReason = typeof LINK_STATUS_REASONS[number];

/**
 * The permissions a linked Page's token needs for Instagram messaging webhooks: "Webhooks for Instagram
 * Messaging", Requirements: "The instagram_basic, instagram_manage_messages, and pages_manage_metadata
 * permissions" (README, Meta app set-up, step 5, says what each is used for here).
 */
export const REQUIRED_LINK_SCOPES = [
  "instagram_basic",
  "instagram_manage_messages",
  "pages_manage_metadata",
] as const;

// "Handling Errors" (Graph API), Authentication Error Subcodes, which come with code 190 (or 102):
//   458 App Not Installed    "The User has not logged into your app. Reauthenticate the User." (Meta's
//                            message after the app is removed: "Error validating access token: The user
//                            has not authorized application <id>", quoted in yongjhih/RetroFacebook#21)
//   459 User Checkpointed    "The User needs to log in at https://www.facebook.com ... to correct an issue."
//   460 Password Changed
//   463 Expired              "Login status or access token has expired, been revoked, or is otherwise invalid."
//   464 Unconfirmed User     the same action as 459 (log in at facebook.com), so the same reason
//   467 Invalid Access Token "Access token has expired, been revoked, or is otherwise invalid."
//   492 Invalid Session      "User associated with the Page access token does not have an appropriate role
//                            on the Page."
// Not in that table:
//   493                      "The access token is invalid since the user hasn't engaged the app in longer
//                            than 90 days." (a real answer quoted in MrSwitch/hello.js#548): data access
//                            ended ("Authentication Versus Data Access", Data Access Expiration)
// Any other subcode, or none: the OAuthException row, "the login status or access token has expired, been
// revoked, or is otherwise invalid. Get a new access token." -> token_invalid.
const SUBCODE_REASONS: Readonly<Record<number, LinkStatusReason>> = {
  458: "app_removed",
  459: "account_checkpointed",
  460: "password_changed",
  463: "token_expired",
  464: "account_checkpointed",
  467: "token_invalid",
  492: "page_role_lost",
  493: "data_access_expired",
};

/** The reason for a dead token, from the 190 subcode Meta gave ("Handling Errors"; see above). */
export function reasonForSubcode(subcode: number | undefined): LinkStatusReason {
  return (subcode !== undefined ? SUBCODE_REASONS[subcode] : undefined) ?? "token_invalid";
}

/**
 * The link's reason, when a Graph call made with its stored Page token failed because of the token or its
 * permissions; undefined for anything else (Meta down, rate limited, a timeout, our own app token refused
 * at debug_token): those say nothing about the link. Reads the AppError classifyGraphError built.
 */
export function reasonFromGraphError(error: unknown): LinkStatusReason | undefined {
  if (!(error instanceof AppError)) return undefined;
  const cause = (error.cause ?? {}) as { meta_code?: number; meta_subcode?: number; reason?: string };
  // debug_token's refusal of another app's token ("(#100) The App_id in the input_token did not match
  // the Viewing App", quoted in many public clients): the token is not this app's.
  if (cause.reason === "other_app") return "page_token_mismatch";
  // "Handling Errors": 190 "Access token has expired" -> by subcode.
  if (error.code === "meta_token_invalid" && cause.meta_code === 190) {
    return reasonForSubcode(cause.meta_subcode);
  }
  // "Handling Errors": 10 "API Permission Denied" and 200-299 "API Permission": "Permission is either not
  // granted or has been removed."
  if (error.code === "permissions_missing") return "permissions_missing";
  return undefined;
}

export interface TokenAssessment {
  /** Why the link needs the doctor; undefined while the token is fine for this Page. */
  reason?: LinkStatusReason;
  /** data_access_expires_at, when Meta reports it: the doctor must reconnect by then. Never guessed. */
  reconnectBy?: Date;
  /** expires_at, when the token expires at all (0 = never). */
  tokenExpiresAt?: Date;
}

/**
 * What debug_token's report on a link's Page token means for that link. `expected`: our app, the linked
 * Page, its Instagram account when known (the target of instagram_* permissions), and the time now.
 */
export function assessPageToken(
  debug: DebugToken,
  expected: { appId: string; pageId: string; instagramAccountId?: string; now: Date },
): TokenAssessment {
  const dates = { reconnectBy: debug.dataAccessExpiresAt, tokenExpiresAt: debug.expiresAt };
  return { reason: reasonOf(debug, expected), ...dates };
}

function reasonOf(
  debug: DebugToken,
  expected: { appId: string; pageId: string; instagramAccountId?: string; now: Date },
): LinkStatusReason | undefined {
  const past = (date: Date | undefined) => date !== undefined && date.getTime() <= expected.now.getTime();
  // Meta would not inspect it: another app's token ("(#100) The App_id in the input_token did not match
  // the Viewing App").
  if (debug.otherApp) return "page_token_mismatch";
  if (!debug.isValid) {
    // "Debug Token": error is "Any error that a request to the graph api would return due to the access
    // token", so its subcode means what it means on any call ("Handling Errors").
    if (debug.error?.subcode !== undefined) return reasonForSubcode(debug.error.subcode);
    // "Debug Token": expires_at "Timestamp when this access token expires".
    if (past(debug.expiresAt)) return "token_expired";
    // "Authentication Versus Data Access": when data access expires the app "can't access their data".
    if (past(debug.dataAccessExpiresAt)) return "data_access_expired";
    // "Debug Token": is_valid "Whether the access token is still valid or not"; no more said.
    return "token_invalid";
  }
  // "Debug Token": app_id "The ID of the application this access token is for"; type PAGE and profile_id
  // ("For impersonated access tokens, the ID of the page this token contains") for a Page token (as the
  // recorded answers in bk-rs/facebook-apis-rs show). Anything else is not this link's Page token.
  if (debug.appId !== expected.appId || debug.type !== "PAGE" || debug.profileId !== expected.pageId) {
    return "page_token_mismatch";
  }
  // "Authentication Versus Data Access" (Data Access Expiration): 90 days after the user was last active,
  // "your app can't access their data"; "Maintaining Data Access" for the app-wide cases.
  if (past(debug.dataAccessExpiresAt)) return "data_access_expired";
  // A valid token past its expires_at should not happen; if Meta says both, the date wins ("Debug Token").
  if (past(debug.expiresAt)) return "token_expired";
  // "Debug Token": scopes "List of permissions that the user has granted for the app in this access token".
  if (REQUIRED_LINK_SCOPES.some((scope) => !debug.scopes.includes(scope))) return "permissions_missing";
  // "Debug Token": granular_scopes, "If permission applies to all, targets will not be shown": when
  // targets are shown, this link's Page (or Instagram account) must be among them. Which object a
  // permission targets: Pages for pages_*, Instagram accounts for instagram_* (the recorded answers in
  // bk-rs/facebook-apis-rs: pages_show_list lists Page ids, instagram_basic an Instagram account id).
  for (const { scope, targetIds } of debug.granularScopes) {
    if (!targetIds || !(REQUIRED_LINK_SCOPES as readonly string[]).includes(scope)) continue;
    const target = scope.startsWith("instagram_") ? expected.instagramAccountId : expected.pageId;
    // A link whose Instagram account is unknown cannot be judged on instagram_* targets: it passes, since
    // a missing id must not flag a working link.
    if (target !== undefined && !targetIds.includes(target)) return "permissions_missing";
  }
  return undefined;
}

/**
 * An Instagram Login link's reason, when a call with its stored Instagram user token failed because of the
 * token or its permissions; undefined for anything that may pass. Never a Page reason: the database
 * refuses those for these links (CHECK doctor_instagram_reason_matches_kind). `expired`: the stored
 * token_expires_at is past, so a 190 means the 60 days ran out ("Refresh Access Token": a refreshed token
 * is "valid for 60 days"), not that it was revoked.
 */
export function instagramReasonFromError(
  error: unknown,
  expired: boolean,
): LinkStatusReason | undefined {
  if (!(error instanceof AppError)) return undefined;
  const cause = (error.cause ?? {}) as { meta_code?: number };
  // "Handling Errors": 190 "Access token has expired" (graph.instagram.com answers in Graph's shape).
  if (error.code === "meta_token_invalid" || cause.meta_code === 190) {
    return expired ? "instagram_token_expired" : "instagram_token_invalid";
  }
  // "Handling Errors": 10 and 200-299, "Permission is either not granted or has been removed."
  if (error.code === "permissions_missing") {
    return "instagram_permissions_missing";
  }
  return undefined;
}

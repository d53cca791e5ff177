// What the fake Meta answers about a link's health once it is made: the 190 errors of a dead token, the
// debug_token report, and the usage headers. Each value names where it comes from (a Meta doc by its
// title, a quoted real answer) or says "guess".
//
// debug_token ("Debug Token", Graph API reference; "Access Tokens: Debugging and Error Handling"):
//   - asked with the app token {app-id}|{app-secret} (the docs also allow an app developer's user token:
//     not modelled). Without it: HTTP 400, code 100, "(#100) You must provide an app access token, or a
//     user access token that is an owner or developer of the app" (a recorded real answer in
//     bk-rs/facebook-apis-rs; also quoted in nyaruka/rapidpro#3734).
//   - a token another app issued: HTTP 400, code 100, "(#100) The App_id in the input_token did not match
//     the Viewing App" (quoted in many public clients).
//   - a token it cannot read: HTTP 200, {"data":{"error":{"code":190,"message":"Invalid OAuth access token
//     - Cannot parse access token"},"is_valid":false,"scopes":[]}} (recorded in bk-rs/facebook-apis-rs).
//   - its own tokens: HTTP 200, {"data":{app_id, type, application, data_access_expires_at, expires_at,
//     is_valid, issued_at, profile_id (Page tokens), scopes, granular_scopes, user_id}}; a dead one keeps
//     those fields, with is_valid false and error {code, message, subcode} (recorded answers for 460, 463,
//     466 in bk-rs/facebook-apis-rs). expires_at 0 = never: a Page token got with a long-lived user token
//     ("Access Token Guide"); with a short-lived one it lasts an hour ("Get a Page Access Token": "These
//     Page access tokens are valid for 1 hour"). issued_at only for long-lived tokens ("Access Tokens:
//     Debugging and Error Handling": "For long-lived access tokens the issued_at field is also returned").
//   - granular_scopes: target_ids for pages_* (the user's Page ids) and instagram_* (their Instagram
//     account ids), as the recorded answers show them; "If permission applies to all, targets will not be
//     shown" ("Debug Token"), so other permissions come without targets. That Facebook Login for Business
//     always lists targets for these: guess.

/** The sandbox app's name, as debug_token and subscribed_apps name it (guess: any name would do). */
export const APP_NAME = "Instagram Connect (sandbox)";

/**
 * "Authentication Versus Data Access": "The expiration period for data access is 90 days, based on when
 * the user was last active." Each Allow in the dialog counts as activity here (guess for the detail).
 */
export const DATA_ACCESS_DAYS = 90;

/** How a killed token fails: Graph's code 190 with this subcode (none: plain 190) and message. */
export interface DeadToken {
  subcode?: number;
  message: string;
}

// The messages Meta sends with each 190 subcode ("Handling Errors" names the subcodes, not the texts):
//   458  quoted in yongjhih/RetroFacebook#21 after the user removed the app (the app id follows)
//   459  quoted in public code handling a checkpointed account
//   460  recorded in bk-rs/facebook-apis-rs (debug_token__user_access_token_4.json) and quoted widely
//   463  recorded in bk-rs/facebook-apis-rs and "Access Tokens: Debugging and Error Handling" (the dates
//        are the token's expiry and now; their exact format: guess)
//   464, 467, 492  guess (the wording of "Handling Errors"' table: Unconfirmed User, Invalid Access
//        Token, Invalid Session)
//   493  quoted in MrSwitch/hello.js#548 (data access ended after 90 days without use)
//   none "Error validating access token: The session is invalid." guess
const DEAD_TOKEN_MESSAGES: Record<number, (appId: string) => string> = {
  458: (appId) => `Error validating access token: The user has not authorized application ${appId}.`,
  459: () =>
    "Error validating access token: You cannot access the app till you log in to www.facebook.com and follow the instructions given.",
  460: () =>
    "Error validating access token: The session has been invalidated because the user changed their password or Facebook has changed the session for security reasons.",
  463: () => {
    const now = new Date();
    return `Error validating access token: Session has expired on ${now.toUTCString()}. The current time is ${now.toUTCString()}.`;
  },
  464: () =>
    "Error validating access token: Sessions for the user are not allowed because the user is not a confirmed user.",
  467: () => "Error validating access token: The session is invalid because the user logged out.",
  492: () =>
    "Error validating access token: The user associated with the Page access token does not have an appropriate role on the Page.",
  493: () => "The access token is invalid since the user hasn't engaged the app in longer than 90 days.",
};

/** The 190 error a token killed with `subcode` answers with (any number; unknown ones get a generic text). */
export function deadTokenError(appId: string, subcode?: number): DeadToken {
  const message = subcode !== undefined ? DEAD_TOKEN_MESSAGES[subcode]?.(appId) : undefined;
  return { subcode, message: message ?? "Error validating access token: The session is invalid." };
}

// Usage headers ("Rate Limits"): "Real time rate limit usage statistics are described in headers that are
// included with most API responses once enough calls have been made"; calls with app or user tokens count
// against Platform Rate Limits (X-App-Usage: {"call_count","total_cputime","total_time"}, percentages),
// calls with Page tokens against Business Use Case Rate Limits (X-Business-Use-Case-Usage:
// {"<business-object-id>":[{"type","call_count","total_cputime","total_time",
// "estimated_time_to_regain_access"}]}). The business object of a Page call is the Page and its type
// "pages": guess. The fake sends them only once a test (or the sandbox) sets a figure, standing for
// "once enough calls have been made".
export interface Usage {
  call_count: number;
  total_cputime: number;
  total_time: number;
  /** Minutes (Business Use Case only). */
  estimated_time_to_regain_access?: number;
}

/** A figure for all three, or the three (and the wait) one by one. */
export type UsageSetting = number | Partial<Usage>;

export function usageOf(setting: UsageSetting): Usage {
  if (typeof setting === "number") {
    return { call_count: setting, total_cputime: setting, total_time: setting };
  }
  return { call_count: 0, total_cputime: 0, total_time: 0, ...setting };
}

/** The usage headers of one answer: X-App-Usage for app and user tokens, BUC for a Page's token. */
export function usageHeaders(
  usage: { app?: Usage; business?: Usage },
  caller: { pageId?: string },
): Record<string, string> {
  if (caller.pageId) {
    if (!usage.business) return {};
    const { estimated_time_to_regain_access = 0, ...figures } = usage.business;
    return {
      "x-business-use-case-usage": JSON.stringify({
        [caller.pageId]: [{ type: "pages", ...figures, estimated_time_to_regain_access }],
      }),
    };
  }
  if (!usage.app) return {};
  const { call_count, total_cputime, total_time } = usage.app;
  return { "x-app-usage": JSON.stringify({ call_count, total_cputime, total_time }) };
}

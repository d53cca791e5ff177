// The Meta sandbox's health controls, for the demo dashboard: a person trying the demo makes "Meta" break
// their current link in one of the ways a real one breaks, to see what the dashboard then says. Local
// only, like the rest of /demo/sandbox/. Each acts on the Page of the caller's own link (read through
// RLS with their session, as demo_sandbox.ts does) and answers {sandbox: true, action, ...what it did}:
//   POST /demo/sandbox/kill-token         {subcode?}            Meta kills the Page's tokens with that 190
//                                                                subcode (458, 459, 460, 463, 464, 467,
//                                                                492; none: a plain 190)
//   POST /demo/sandbox/drop-subscription  {}                    the Page's webhook subscription is gone
//   POST /demo/sandbox/data-access        {days}                the user's data access ends in `days`
//                                                                days (0 or less: it has ended)
//   POST /demo/sandbox/remove-permission  {permission, page_only?} the user takes a permission back, for
//                                                                every Page or only for this one
//   POST /demo/sandbox/usage              {percent}             the usage headers' figure (null: none)
// What Meta then answers, and where each answer comes from: fake_meta_health.ts.
import type { LocalStack } from "./local_stack.ts";
import type { ErrorCode } from "../../supabase/functions/_shared/errors.ts";

/** The 190 subcodes "Handling Errors" lists (and 493, data access over, quoted in MrSwitch/hello.js#548). */
export const SANDBOX_SUBCODES = [458, 459, 460, 463, 464, 467, 492, 493];
/** How the dashboard's sandbox names each subcode: "Handling Errors"' names (493: MrSwitch/hello.js#548). */
export const SANDBOX_SUBCODE_NAMES: Readonly<Record<number, string>> = {
  458: "App Not Installed (the app removed)",
  459: "User Checkpointed",
  460: "Password Changed",
  463: "Expired",
  464: "Unconfirmed User",
  467: "Invalid Access Token",
  492: "Invalid Session (Page role lost)",
  493: "data access over (90 days)",
};
export const HEALTH_ACTIONS = [
  "kill-token",
  "drop-subscription",
  "data-access",
  "remove-permission",
  "usage",
] as const;
export type HealthAction = typeof HEALTH_ACTIONS[number];

const PERMISSION = /^[a-z_]{1,64}$/;
const MAX_DAYS = 3650;

/** Runs one control on the caller's Page; `fail` answers a refusal the way demo_sandbox.ts does. */
export function healthControl(
  stack: LocalStack,
  action: HealthAction,
  pageId: string,
  body: Record<string, unknown> | null,
  fail: (code: ErrorCode) => Response,
): Response {
  const meta = stack.meta;
  const done = (result: Record<string, unknown>) => Response.json({ sandbox: true, action, ...result });
  switch (action) {
    case "kill-token": {
      const subcode = body?.subcode ?? undefined;
      if (subcode !== undefined && !SANDBOX_SUBCODES.includes(subcode as number)) {
        return fail("invalid_request");
      }
      return done({
        subcode: subcode ?? null,
        killed: meta.killPageTokens(pageId, subcode as number | undefined),
      });
    }
    case "drop-subscription":
      return done({ dropped: meta.dropSubscription(pageId) });
    case "data-access": {
      const days = body?.days;
      if (typeof days !== "number" || !Number.isFinite(days) || Math.abs(days) > MAX_DAYS) {
        return fail("invalid_request");
      }
      const owner = meta.pageTokenOwner(pageId);
      if (!owner) return fail("not_found");
      const at = new Date(Date.now() + days * 86_400_000);
      meta.setDataAccessExpiry(owner, at);
      return done({ data_access_expires_at: at.toISOString() });
    }
    case "remove-permission": {
      const permission = body?.permission;
      if (typeof permission !== "string" || !PERMISSION.test(permission)) return fail("invalid_request");
      const owner = meta.pageTokenOwner(pageId);
      if (!owner) return fail("not_found");
      const pageOnly = body?.page_only === true;
      meta.removePermission(owner, permission, pageOnly ? pageId : undefined);
      return done({ permission, page_only: pageOnly });
    }
    case "usage": {
      const percent = body?.percent;
      if (percent === null) {
        meta.setUsage();
        return done({ percent: null });
      }
      if (typeof percent !== "number" || !Number.isFinite(percent) || percent < 0 || percent > 1000) {
        return fail("invalid_request");
      }
      meta.setUsage(percent);
      return done({ percent });
    }
  }
}

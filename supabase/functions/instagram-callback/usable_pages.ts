// What the doctor granted at Meta, and which of their Pages can be offered. Every configured permission
// must be granted (a link without instagram_manage_messages could never carry a message). A Page is
// usable when it has an Instagram business or creator account, a Page token, and the doctor may perform
// the MODERATE task on it: Meta's requirement for Instagram messaging through a Page ("Messenger API
// support for Instagram: Getting Started"), which also allows subscribing the Page to webhooks
// ("Webhooks for Pages": CREATE_CONTENT, MANAGE or MODERATE). When the doctor named a Page at connect
// (signed into the state), only that one is considered.
import { AppError } from "../_shared/errors.ts";
import type { FacebookPage } from "../_shared/meta/graph.ts";

const REQUIRED_TASK = "MODERATE";
// As many as a pending connection holds (create_pending_connection); more is not a practice's Page list.
const MAX_OFFERED = 100;
// Control and bidi-override characters: a name with them could read differently from what it says.
const UNSAFE_CHARACTERS = /[\p{Cc}\u200e\u200f\u202a-\u202e\u2066-\u2069]/gu;

export interface UsablePage {
  id: string;
  name?: string;
  accessToken: string;
  instagramAccountId: string;
  instagramUsername?: string;
}

/** Throws permissions_missing naming what was not granted (for JSON answers and the log). */
export function requireScopes(
  required: readonly string[],
  granted: readonly string[],
  grantor: "Facebook" | "Instagram" = "Facebook",
): void {
  const missing = required.filter((scope) => !granted.includes(scope));
  if (missing.length) {
    throw new AppError("permissions_missing", {
      message: `${grantor} did not grant: ${
        missing.join(", ")
      }. Press Connect Instagram again and allow all of them.`,
      cause: { missing },
    });
  }
}

export function usablePages(
  pages: FacebookPage[],
  requestedPageId?: string,
): UsablePage[] {
  if (pages.length === 0) throw new AppError("no_pages");
  const candidates = requestedPageId ? pages.filter((page) => page.id === requestedPageId) : pages;
  if (candidates.length === 0) throw new AppError("page_not_found");
  const withInstagram = candidates.filter((page) => page.instagram_business_account && page.access_token);
  if (withInstagram.length === 0) {
    throw new AppError("instagram_account_missing");
  }
  const usable = withInstagram.filter((page) => page.tasks?.includes(REQUIRED_TASK));
  if (usable.length === 0) throw new AppError("page_role_insufficient");
  return usable.slice(0, MAX_OFFERED).map((page) => ({
    id: page.id,
    name: cleanText(page.name),
    accessToken: page.access_token!,
    instagramAccountId: page.instagram_business_account!.id,
    instagramUsername: cleanText(page.instagram_business_account!.username),
  }));
}

/** Text from Meta as we store and show it: well-formed, without unsafe characters; empty is none. */
function cleanText(value: string | undefined): string | undefined {
  return value?.toWellFormed().replace(UNSAFE_CHARACTERS, "") || undefined;
}

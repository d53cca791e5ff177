// Which of the Pages Meta shared can be offered to the doctor: those with an Instagram business or
// creator account and a Page token (a Page without an Instagram account cannot serve Instagram). When
// the doctor named a Page at connect (signed into the state), only that one.
import { AppError } from "../_shared/errors.ts";
import type { FacebookPage } from "../_shared/meta/graph.ts";

export interface UsablePage {
  id: string;
  name?: string;
  accessToken: string;
  instagramAccountId: string;
  instagramUsername?: string;
}

export function usablePages(pages: FacebookPage[], requestedPageId?: string): UsablePage[] {
  if (pages.length === 0) throw new AppError("no_pages");
  const candidates = requestedPageId ? pages.filter((page) => page.id === requestedPageId) : pages;
  if (candidates.length === 0) throw new AppError("page_not_found");
  const usable = candidates.flatMap((page) =>
    page.instagram_business_account && page.access_token
      ? [{
        id: page.id,
        name: page.name,
        accessToken: page.access_token,
        instagramAccountId: page.instagram_business_account.id,
        instagramUsername: page.instagram_business_account.username,
      }]
      : []
  );
  if (usable.length === 0) throw new AppError("instagram_account_missing");
  return usable;
}

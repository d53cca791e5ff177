// Which of the doctor's Pages to link: the one asked for, or else the first Page that has an
// Instagram business/creator account (a Page without one cannot be used for Instagram at all).
import { AppError } from "./errors.ts";
import type { FacebookPage } from "./meta_graph.ts";

export interface ChosenPage {
  id: string;
  name?: string;
  accessToken: string;
  instagramAccountId: string;
  instagramUsername?: string;
}

export function choosePage(pages: FacebookPage[], requestedPageId?: string): ChosenPage {
  if (pages.length === 0) throw new AppError("no_pages");
  const candidates = requestedPageId ? pages.filter((page) => page.id === requestedPageId) : pages;
  if (candidates.length === 0) throw new AppError("page_not_found");
  const page = candidates.find((candidate) => candidate.instagram_business_account && candidate.access_token);
  if (!page) throw new AppError("instagram_account_missing");
  return {
    id: page.id,
    name: page.name,
    accessToken: page.access_token!,
    instagramAccountId: page.instagram_business_account!.id,
    instagramUsername: page.instagram_business_account!.username,
  };
}

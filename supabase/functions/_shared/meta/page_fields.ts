// The fields `POST /{page-id}/subscribed_apps` accepts in `subscribed_fields` ("Page Subscribed Apps"),
// used by the configuration (INSTAGRAM_WEBHOOK_FIELDS must be Page fields) and by the fake Meta, which
// refuses anything else as Meta does.
//
// Source: Meta's own refusal, quoted in restfb/restfb#1210 ("Webhook event messaging_seen", 2022-05-17),
// when an app sent the Instagram field `messaging_seen` to a Page:
//   (#100) Param subscribed_fields[2] must be one of {feed, mention, name, ..., page_change_proposal,
//   merchan...
// The quote as we could read it breaks off inside the word after `page_change_proposal` ("merchan"), so
// the rest of Meta's list is NOT recovered here: the fields below are exactly the ones before that
// point, in Meta's order. Whatever Meta lists after it (likely a merchant field and more) is missing,
// and the fake refuses it; nothing this project subscribes to lies there.

/** Meta's list as quoted in restfb/restfb#1210 (2022-05), in its order, up to where the quote breaks off. */
export const PAGE_FIELDS_QUOTED = [
  "feed",
  "mention",
  "name",
  "picture",
  "category",
  "description",
  "conversations",
  "branded_camera",
  "feature_access_list",
  "inbox_labels",
  "standby",
  "message_mention",
  "messages",
  "message_reactions",
  "messaging_account_linking",
  "messaging_checkout_updates",
  "messaging_customer_information",
  "message_echoes",
  "message_deliveries",
  "messaging_game_plays",
  "messaging_optins",
  "messaging_optouts",
  "messaging_payments",
  "messaging_postbacks",
  "messaging_pre_checkouts",
  "message_reads",
  "messaging_referrals",
  "messaging_handovers",
  "messaging_policy_enforcement",
  "messaging_page_feedback",
  "messaging_appointments",
  "messaging_direct_sends",
  "messaging_fblogin_account_linking",
  "user_action",
  "messaging_feedback",
  "founded",
  "company_overview",
  "mission",
  "products",
  "general_info",
  "leadgen",
  "leadgen_fat",
  "location",
  "hours",
  "parking",
  "public_transit",
  "page_about_story",
  "mcom_invoice_change",
  "invoice_access_invoice_change",
  "invoice_access_onboarding_status_active",
  "local_delivery",
  "phone",
  "email",
  "website",
  "ratings",
  "attire",
  "payment_options",
  "culinary_team",
  "general_manager",
  "price_range",
  "awards",
  "hometown",
  "current_location",
  "bio",
  "affiliation",
  "birthday",
  "personal_info",
  "personal_interests",
  "members",
  "checkins",
  "page_upcoming_change",
  "page_change_proposal",
] as const;

/** Page fields Meta documented after that error, each with the doc that names it. */
export const PAGE_FIELDS_DOCUMENTED_LATER = [
  // Messenger Platform, "message_edits Webhook Event Reference": "selecting the message_edits field".
  "message_edits",
] as const;

/** Every Page webhook field we know Meta accepts: the quoted list, then the later ones. */
export const PAGE_WEBHOOK_FIELDS: readonly string[] = [
  ...PAGE_FIELDS_QUOTED,
  ...PAGE_FIELDS_DOCUMENTED_LATER,
];

const PAGE_FIELD_SET = new Set(PAGE_WEBHOOK_FIELDS);

export function isPageWebhookField(field: string): boolean {
  return PAGE_FIELD_SET.has(field);
}

/**
 * Fields of the `instagram` webhook object, which Meta refuses on a Page: they are selected for the app
 * in the App Dashboard (Webhooks, Instagram object), never per Page or per account.
 *   messaging_seen: "Webhooks for Instagram Messaging" (Messenger API support for Instagram), and the
 *     refusal in restfb/restfb#1210;
 *   comments, live_comments, mentions, story_insights: "Set Up Webhooks for Instagram".
 */
export const INSTAGRAM_ONLY_FIELDS: readonly string[] = [
  "messaging_seen",
  "comments",
  "live_comments",
  "mentions",
  "story_insights",
];

/**
 * What finish subscribes each linked Page to by default. "Webhooks for Instagram Messaging" (Messenger
 * API support for Instagram), Step 2 "Enable Page Subscriptions": the app must subscribe the Page
 * connected to the account through `POST /{page-id}/subscribed_apps`; the Instagram fields themselves
 * are chosen for the app in the App Dashboard. "Page Subscribed Apps": "only fields with subscriptions
 * at both the page and app levels will get Webhooks". So the Page gets the Page names of the messaging
 * events the app selects for Instagram: messages, postbacks, reactions, and read receipts
 * (`message_reads` on a Page; `messaging_seen` on the Instagram object). All four are in Meta's list.
 */
export const DEFAULT_PAGE_WEBHOOK_FIELDS: readonly string[] = [
  "messages",
  "messaging_postbacks",
  "message_reactions",
  "message_reads",
];

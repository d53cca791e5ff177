-- public.doctor_instagram: the Instagram professional account each doctor linked, through its Facebook
-- Page (token_kind 'page', Facebook Login) or directly through Instagram Login (token_kind
-- 'instagram_user', "Business Login for Instagram": no Page).
--
-- One row per doctor (primary key doctor_id) and one doctor per Instagram account (unique
-- instagram_business_account_id, the link's identity on both paths: the Page's
-- instagram_business_account.id and Instagram Login's /me user_id are the same professional account id,
-- the id webhooks carry in entry.id) and per Page (unique instagram_page_id, null without a Page): the
-- link functions answer page_already_linked or account_already_linked (409) rather than move an account
-- from one doctor to another.
-- The row is written only by link_pending_connection() (07_link.sql), once the doctor who started the
-- flow has confirmed it from their own session, and removed by disconnect_doctor_instagram(),
-- forget_facebook_user() and forget_instagram_user() (08_meta_lifecycle.sql), or with the doctor's
-- auth.users row (on delete cascade; that path tells Meta nothing). Every insert, update and delete is audited by a trigger
-- (02_audit_log.sql).
--
-- Rules enforced here:
-- * The access token (a Page token, or an Instagram user token) is never stored in the clear.
--   instagram-callback encrypts it (AES-256-GCM, supabase/functions/_shared/crypto/page_token.ts) with
--   this doctor and this Page (or, without a Page, this Instagram account) bound as additional data, so
--   a dump, a backup or a ciphertext copied to another row yields no usable token. The CHECK
--   doctor_instagram_token_encrypted refuses any value without the "v<version>." prefix of that
--   ciphertext ("v2.<key id>.<iv>.<ciphertext>", or "v1.<iv>.<ciphertext>" from before key rotation), so
--   a raw Meta token can never be written by mistake. Which keys the stored values use:
--   token_key_usage() (10_token_keys.sql).
-- * Ids from Meta are numeric strings, names and scope lists have bounded sizes (CHECKs);
--   create_pending_connection() validates ids and cuts names with private.clip() before they get here.
-- * Doctors (authenticated) may read their own row only (RLS policy) and only the columns granted below,
--   never instagram_access_token: column grants hold whatever a policy says. They may not insert,
--   update or delete: linking goes through finish, and disconnecting through the instagram-connect
--   function, which tells Meta (unsubscribes the Page or the Instagram account, revokes the grant unless
--   another doctor still needs it) before it deletes the row. anon gets nothing.
-- * service_role (which bypasses RLS) may select and delete whole rows. The select is for the webhook
--   worker, which lives outside this repository: it resolves page -> doctor and decrypts the token
--   (the key ring's decrypt). None of the edge functions deletes rows directly; a direct delete is still
--   audited, but tells Meta nothing. The SECURITY DEFINER functions do not need these grants.

create table public.doctor_instagram (
  doctor_id uuid primary key references auth.users (id) on delete cascade,
  -- The Facebook Page the account was linked through; null for an Instagram Login link, which has none
  -- (doctor_instagram_page_matches_kind below).
  instagram_page_id text unique
    constraint doctor_instagram_page_id_format check (instagram_page_id ~ '^[0-9]{1,32}$'),
  -- Always the application's versioned ciphertext ("v2.<key id>.<iv>.<ciphertext>", or v1 from before key
  -- rotation), never a raw Meta token.
  instagram_access_token text not null
    constraint doctor_instagram_token_encrypted check (
      instagram_access_token ~ '^v[0-9]+\.' and char_length(instagram_access_token) <= 4096
    ),
  -- Empty names are refused: private.clip() turns them into null.
  instagram_username text
    constraint doctor_instagram_username_length check (char_length(instagram_username) between 1 and 64),
  page_name text
    constraint doctor_instagram_page_name_length check (char_length(page_name) between 1 and 255),
  -- The Instagram professional account: the link's identity on both paths and for webhooks, which name
  -- it (entry.id of the `instagram` object), so one account belongs to one doctor whatever the path
  -- (unique; link_pending_connection() answers page_already_linked on the Facebook path and
  -- account_already_linked on the Instagram path).
  instagram_business_account_id text
    constraint doctor_instagram_ig_account_id_format check (instagram_business_account_id ~ '^[0-9]{1,32}$')
    constraint doctor_instagram_ig_account_id_key unique,
  connected_at timestamptz not null default now(),
  -- Set by the trigger below on every update. forget_facebook_user() compares it with the time Meta
  -- issued its request, so a link made or renewed after that request is left alone.
  updated_at timestamptz not null default now(),
  -- The app-scoped Facebook user who granted the link (Facebook path only: null for an Instagram
  -- Login link), and the permissions they granted. Neither is a secret (the doctor may read both), and
  -- neither is ever copied into the audit log.
  facebook_user_id text
    constraint doctor_instagram_facebook_user_id_format check (facebook_user_id ~ '^[0-9]{1,32}$'),
  granted_scopes text[]
    constraint doctor_instagram_granted_scopes_size check (cardinality(granted_scopes) <= 100),
  -- The token model: what the stored token is and when Meta says it expires. A Page access token
  -- (a Page token obtained from a long-lived user token does not expire: "Long-Lived Access Tokens");
  -- or an Instagram user token (Instagram Login: 60 days, "Long-Lived Access Tokens" of the Instagram
  -- Platform), which instagram-maintenance refreshes (record_instagram_token_refresh(), 11). Null
  -- token_expires_at: Meta reported no expiry (debug_token's expires_at 0).
  token_kind text not null default 'page'
    constraint doctor_instagram_token_kind check (token_kind in ('page', 'instagram_user')),
  token_expires_at timestamptz,
  -- The link's health, which the doctor reads (RLS) and instagram-maintenance keeps up to date:
  -- needs_reconnect with a reason (public.instagram_link_status_reasons holds each reason's sentence)
  -- once Meta no longer accepts the link and it cannot be repaired here. A reconnect (finish with the
  -- same account, the same way) sets it active again.
  status text not null default 'active'
    constraint doctor_instagram_status check (status in ('active', 'needs_reconnect')),
  -- The instagram_* reasons are Instagram Login's: a Page link never takes them, and an Instagram Login
  -- link takes only them (doctor_instagram_reason_matches_kind), so the doctor never reads about a Page
  -- they do not have.
  status_reason text
    constraint doctor_instagram_status_reason check (status_reason in (
      'token_expired', 'password_changed', 'app_removed', 'token_invalid', 'page_role_lost',
      'account_checkpointed', 'data_access_expired', 'permissions_missing', 'page_token_mismatch',
      'subscription_lost',
      'instagram_token_expired', 'instagram_refresh_failed', 'instagram_token_invalid',
      'instagram_permissions_missing', 'instagram_subscription_lost'
    )),
  -- When instagram-maintenance last checked the link at Meta (null: not yet), and the date by which the
  -- doctor must reconnect, only when Meta reports one for this token (debug_token's
  -- data_access_expires_at): never a guessed date.
  checked_at timestamptz,
  reconnect_by timestamptz,
  -- instagram-maintenance's lease: a run that is checking this link (lease_id) until lease_until, so two
  -- runs at once never check the same link. Row locks cannot serve: they end with each RPC, and the Meta
  -- calls happen between two RPCs. Not granted to doctors.
  lease_id uuid,
  lease_until timestamptz,
  constraint doctor_instagram_status_has_reason check ((status = 'needs_reconnect') = (status_reason is not null)),
  -- Instagram Login's app-scoped user id (/me's `id`, NOT its `user_id`, which is the account id above):
  -- what the Instagram app's deauthorize and data deletion callbacks may name (forget_instagram_user()).
  -- Set for instagram_user links only. Not a secret (the doctor may read it), never in the audit log.
  instagram_user_id text
    constraint doctor_instagram_instagram_user_id_format check (instagram_user_id ~ '^[0-9]{1,32}$'),
  -- When the stored Instagram user token was obtained or last refreshed: Meta refreshes only a token at
  -- least 24 hours old ("Refresh Access Token"). Bookkeeping like token_expires_at (no updated_at change),
  -- except that it changes with the token on a refresh, which is audited (instagram.token_refreshed).
  token_refreshed_at timestamptz,
  -- A disconnect in progress (prepare_disconnect(), 08) until it deletes the row: the link no longer
  -- holds its webhook subscription (12_subscriptions.sql), so the disconnect can take it back before it
  -- revokes, and the doctor cannot link again meanwhile. A disconnect that died leaves it to run out;
  -- the next maintenance run clears it. Not granted to doctors.
  disconnecting_until timestamptz,
  -- A Page link has a Page and an Instagram Login link has none; the Facebook user and the Instagram user
  -- belong to their own path; a reason belongs to its kind of link (see status_reason).
  constraint doctor_instagram_page_matches_kind check ((token_kind = 'page') = (instagram_page_id is not null)),
  constraint doctor_instagram_user_matches_kind check (
    (token_kind = 'page' or facebook_user_id is null) and (token_kind = 'instagram_user' or instagram_user_id is null)
  ),
  constraint doctor_instagram_reason_matches_kind check (
    status_reason is null or (token_kind = 'instagram_user') = starts_with(status_reason, 'instagram_')
  )
);

-- Every new or changed link names its Instagram account. NOT VALID: rows linked before this rule (none
-- is known to lack one: create_pending_connection() has always required it) are not checked; until
-- relinked, such a row receives no webhook events (they are counted as for an unknown account).
alter table public.doctor_instagram
  add constraint doctor_instagram_ig_account_required check (instagram_business_account_id is not null) not valid;

comment on table public.doctor_instagram is
  'Instagram account linked by each doctor, through its Facebook Page or Instagram Login. Written only by link_pending_connection(); removed by disconnect_doctor_instagram(), forget_facebook_user(), forget_instagram_user(), or with the doctor''s auth.users row.';
comment on column public.doctor_instagram.instagram_access_token is
  'Page access token or Instagram user token, AES-GCM encrypted by the edge function. No client role can read this column.';
comment on column public.doctor_instagram.connected_at is
  'When the current account was linked; kept when the same account is re-linked the same way with a fresh token.';
comment on column public.doctor_instagram.status is
  'active, or needs_reconnect (status_reason says why; the doctor connects again to fix it).';
comment on column public.doctor_instagram.reconnect_by is
  'When Meta''s data access for this link expires (debug_token data_access_expires_at); null when Meta reports none.';
comment on column public.doctor_instagram.facebook_user_id is
  'App-scoped id of the Facebook user who granted the link: what Meta''s deauthorize and data deletion callbacks name.';

-- Meta's deauthorize and data deletion callbacks name only the Facebook user (forget_facebook_user()),
-- and a disconnect asks whether another doctor still relies on the same user (prepare_disconnect()).
create index doctor_instagram_facebook_user_id_idx on public.doctor_instagram (facebook_user_id);
-- The same for the Instagram app's callbacks (forget_instagram_user()).
create index doctor_instagram_instagram_user_id_idx on public.doctor_instagram (instagram_user_id);
comment on column public.doctor_instagram.instagram_user_id is
  'Instagram Login''s app-scoped user id (/me id, not user_id): what the Instagram app''s deauthorize and data deletion callbacks may name.';

-- Keeps updated_at true on every update of the link itself, whoever makes it: the health bookkeeping
-- (status, checks, the lease), re-encryption under a new key (which sets app.token_reencryption) and
-- the refresh of an Instagram user token (app.token_refresh) are not a change of the grant, and forget_facebook_user() relies on updated_at to leave alone only links
-- made or renewed after Meta's request. Not SECURITY DEFINER: it only changes the row being written. search_path = '' like every function here (no name can be captured by an object
-- in a schema on the caller's path; Supabase's linter flags a mutable search_path). EXECUTE is revoked
-- from PUBLIC: a trigger function is not checked for EXECUTE when it fires, so nobody needs it.
create function private.touch_updated_at()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  bookkeeping text[] := array[
    'updated_at', 'status', 'status_reason', 'checked_at', 'reconnect_by', 'token_expires_at', 'lease_id', 'lease_until',
    'token_refreshed_at', 'disconnecting_until'
  ];
begin
  if current_setting('app.token_reencryption', true) = 'on' or current_setting('app.token_refresh', true) = 'on' then
    bookkeeping := array_append(bookkeeping, 'instagram_access_token');
  end if;
  if to_jsonb(new) - bookkeeping is distinct from to_jsonb(old) - bookkeeping then
    new.updated_at := now();
  end if;
  return new;
end;
$$;
revoke all on function private.touch_updated_at() from public;

create trigger doctor_instagram_touch_updated_at
  before update on public.doctor_instagram
  for each row execute function private.touch_updated_at();

-- Supabase grants every new public table to the API roles by default; take that back and grant
-- column by column, so no client role can ever select the token, whatever the policies say.
alter table public.doctor_instagram enable row level security;
revoke all on public.doctor_instagram from public, anon, authenticated, service_role;
grant select (
  doctor_id, instagram_page_id, instagram_username, page_name,
  instagram_business_account_id, connected_at, updated_at, facebook_user_id, granted_scopes,
  token_kind, token_expires_at, status, status_reason, checked_at, reconnect_by,
  instagram_user_id, token_refreshed_at
) on public.doctor_instagram to authenticated;
-- The webhook worker (outside this repository) resolves page -> doctor and reads the encrypted token
-- with the secret key. The edge functions do not use the delete (see the header).
grant select, delete on public.doctor_instagram to service_role;

-- The only policy: doctors read their own row. With no insert, update or delete policy (and no such
-- grant), RLS refuses every write by a client. auth.uid() is wrapped in a select so that it is
-- evaluated once per statement, not once per row.
create policy "Doctors can read their own Instagram link"
  on public.doctor_instagram for select to authenticated
  using ((select auth.uid()) = doctor_id);

-- instagram-maintenance leases the least recently checked links first (never-checked ones first).
create index doctor_instagram_checked_at_idx on public.doctor_instagram (checked_at nulls first);

-- public.instagram_link_status_reasons: each reason a link may need reconnecting, as a stable code and
-- the sentence the doctor sees (the dashboard shows it as it is). A view over constant rows rather than
-- a table, so the declarative schema holds the sentences and a migration generated from it carries
-- them. security_invoker: it reads nothing, but no view here runs with its owner's rights. The codes
-- are the CHECK doctor_instagram_status_reason above (pgTAP checks the two agree); where each comes
-- from at Meta: supabase/functions/_shared/meta/link_health.ts.
create view public.instagram_link_status_reasons
with (security_invoker = true)
as
select code, doctor_message
from (values
  ('token_expired',
   'Facebook''s permission for this connection has expired. Press Reconnect to renew it.'),
  ('password_changed',
   'Your Facebook password was changed, which ends our access to your Page. Press Reconnect to restore it.'),
  ('app_removed',
   'Our app was removed from your Facebook account''s settings. Press Reconnect and allow it again.'),
  ('token_invalid',
   'Facebook no longer accepts this connection. Press Reconnect to restore it.'),
  ('page_role_lost',
   'Your Facebook account no longer has a role on this Page that lets us read its messages. Ask the Page''s admin to give you full control again, then press Reconnect.'),
  ('account_checkpointed',
   'Facebook asks you to sign in at facebook.com to confirm your account. Do that, then press Reconnect.'),
  ('data_access_expired',
   'Facebook asks you to confirm our access to your data again, as it does every 90 days. Press Reconnect.'),
  ('permissions_missing',
   'A permission we need was removed in Facebook. Press Reconnect and allow every permission.'),
  ('page_token_mismatch',
   'Facebook no longer gives us access to this Page with your connection. Press Reconnect and select the Page again.'),
  ('subscription_lost',
   'Facebook stopped sending us your Instagram messages and we could not turn them back on. Press Reconnect.'),
  ('instagram_token_expired',
   'Instagram''s permission for this connection has expired. Press Reconnect and sign in with Instagram again.'),
  ('instagram_refresh_failed',
   'Instagram would not renew our access to your account, which ends on the date shown. Press Reconnect and sign in with Instagram before then.'),
  ('instagram_token_invalid',
   'Instagram no longer accepts this connection (for example after a password change, or our app was removed in your Instagram settings). Press Reconnect and sign in with Instagram.'),
  ('instagram_permissions_missing',
   'A permission we need was removed in Instagram. Press Reconnect and allow every permission.'),
  ('instagram_subscription_lost',
   'Instagram stopped sending us your messages and we could not turn them back on. Press Reconnect.')
) as reasons (code, doctor_message);

revoke all on public.instagram_link_status_reasons from public, anon, authenticated, service_role;
grant select on public.instagram_link_status_reasons to authenticated, service_role;
comment on view public.instagram_link_status_reasons is
  'Why a link needs reconnecting: each status_reason code with the sentence the doctor sees.';

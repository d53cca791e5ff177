-- public.doctor_instagram: the Instagram account each doctor linked, through its Facebook Page.
--
-- One row per doctor (primary key doctor_id) and one doctor per Page (unique instagram_page_id): the
-- link functions answer page_already_linked (409) rather than move a Page from one doctor to another.
-- The row is written only by link_pending_connection() (07_link.sql), once the doctor who started the
-- flow has confirmed it from their own session, and removed by disconnect_doctor_instagram() and
-- forget_facebook_user() (08_meta_lifecycle.sql), or with the doctor's auth.users row (on delete
-- cascade; that path tells Meta nothing). Every insert, update and delete is audited by a trigger
-- (02_audit_log.sql).
--
-- Rules enforced here:
-- * The Page access token is never stored in the clear. instagram-callback encrypts it (AES-256-GCM,
--   supabase/functions/_shared/crypto/page_token.ts) with this doctor and this Page bound as additional
--   data, so a dump, a backup or a ciphertext copied to another row yields no usable token. The CHECK
--   doctor_instagram_token_encrypted refuses any value without the "v<version>." prefix of that
--   ciphertext ("v2.<key id>.<iv>.<ciphertext>", or "v1.<iv>.<ciphertext>" from before key rotation), so
--   a raw Meta token can never be written by mistake. Which keys the stored values use:
--   token_key_usage() (10_token_keys.sql).
-- * Ids from Meta are numeric strings, names and scope lists have bounded sizes (CHECKs);
--   create_pending_connection() validates ids and cuts names with private.clip() before they get here.
-- * Doctors (authenticated) may read their own row only (RLS policy) and only the columns granted below,
--   never instagram_access_token: column grants hold whatever a policy says. They may not insert,
--   update or delete: linking goes through finish, and disconnecting through the instagram-connect
--   function, which tells Meta (unsubscribes the Page, revokes the grant unless another doctor still
--   needs it) before it deletes the row. anon gets nothing.
-- * service_role (which bypasses RLS) may select and delete whole rows. The select is for the webhook
--   worker, which lives outside this repository: it resolves page -> doctor and decrypts the token
--   (the key ring's decrypt). None of the edge functions deletes rows directly; a direct delete is still
--   audited, but tells Meta nothing. The SECURITY DEFINER functions do not need these grants.

create table public.doctor_instagram (
  doctor_id uuid primary key references auth.users (id) on delete cascade,
  instagram_page_id text not null unique
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
  -- The Instagram professional account: the link's identity for webhooks, which name it (entry.id of
  -- the `instagram` object), so one account belongs to one doctor (unique; link_pending_connection()
  -- answers page_already_linked for it as for the Page).
  instagram_business_account_id text
    constraint doctor_instagram_ig_account_id_format check (instagram_business_account_id ~ '^[0-9]{1,32}$')
    constraint doctor_instagram_ig_account_id_key unique,
  connected_at timestamptz not null default now(),
  -- Set by the trigger below on every update. forget_facebook_user() compares it with the time Meta
  -- issued its request, so a link made or renewed after that request is left alone.
  updated_at timestamptz not null default now(),
  -- The app-scoped Facebook user who granted the link, and the permissions they granted. Neither is a
  -- secret (the doctor may read both), and neither is ever copied into the audit log.
  facebook_user_id text
    constraint doctor_instagram_facebook_user_id_format check (facebook_user_id ~ '^[0-9]{1,32}$'),
  granted_scopes text[]
    constraint doctor_instagram_granted_scopes_size check (cardinality(granted_scopes) <= 100)
);

-- Every new or changed link names its Instagram account. NOT VALID: rows linked before this rule (none
-- is known to lack one: create_pending_connection() has always required it) are not checked; until
-- relinked, such a row receives no webhook events (they are counted as for an unknown account).
alter table public.doctor_instagram
  add constraint doctor_instagram_ig_account_required check (instagram_business_account_id is not null) not valid;

comment on table public.doctor_instagram is
  'Instagram account (via its Facebook Page) linked by each doctor. Written only by link_pending_connection(); removed by disconnect_doctor_instagram(), forget_facebook_user(), or with the doctor''s auth.users row.';
comment on column public.doctor_instagram.instagram_access_token is
  'Page access token, AES-GCM encrypted by the edge function. No client role can read this column.';
comment on column public.doctor_instagram.connected_at is
  'When the current page was linked; kept when the same page is re-linked with a fresh token.';
comment on column public.doctor_instagram.facebook_user_id is
  'App-scoped id of the Facebook user who granted the link: what Meta''s deauthorize and data deletion callbacks name.';

-- Meta's deauthorize and data deletion callbacks name only the Facebook user (forget_facebook_user()),
-- and a disconnect asks whether another doctor still relies on the same user (prepare_disconnect()).
create index doctor_instagram_facebook_user_id_idx on public.doctor_instagram (facebook_user_id);

-- Keeps updated_at true on every update, whoever makes it. Not SECURITY DEFINER: it only changes the
-- row being written. search_path = '' like every function here (no name can be captured by an object
-- in a schema on the caller's path; Supabase's linter flags a mutable search_path). EXECUTE is revoked
-- from PUBLIC: a trigger function is not checked for EXECUTE when it fires, so nobody needs it.
create function private.touch_updated_at()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.updated_at := now();
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
  instagram_business_account_id, connected_at, updated_at, facebook_user_id, granted_scopes
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

-- private.pending_connections: what the OAuth callback learned from Meta, waiting for the confirmation
-- of the doctor who started the flow.
--
-- Why: the signed state proves which doctor *started* a flow, not who pressed Allow at Meta. If the
-- callback linked at once, a connect URL forwarded to someone else would link *their* Page to the
-- sender (account-linking CSRF; RFC 9700, section 4.7). So the callback only stores the usable Pages
-- here, for ten minutes, and hands the browser a random token; nothing is linked until the doctor who
-- started the flow confirms it from their own signed-in session (instagram-connect's finish:
-- open_pending_connection() then link_pending_connection(), 07_link.sql).
--
-- Rules:
-- * Only the SHA-256 of that token is stored (supabase/functions/_shared/oauth/pending_token.ts; the
--   CHECK demands 64 lower-case hex digits), so the database never holds a token that could finish a
--   connection.
-- * Each Page's access token is ciphertext bound to this doctor and that Page exactly as in
--   doctor_instagram, so finishing copies it as it is. No Page token outlives its purpose: a used
--   pending connection is emptied (pages = '[]'), linking deletes the doctor's other unused ones, a
--   refused finish deletes its pending connection, and the sweep (05_sweep_expired.sql, run by every
--   new state and pending connection) empties expired ones and deletes them an hour after expiry.
-- * A pending connection lives at most an hour (CHECK; create_pending_connection() gives ten minutes),
--   and a doctor has at most 10 open ones (private.check_pending_limit()).
-- * It keeps the Facebook user (or, for Instagram Login, the Instagram user) and the permissions
--   granted, for the link and so that Meta's deauthorize and data deletion requests find it
--   (forget_facebook_user(), forget_instagram_user()). It goes with the doctor's auth.users row.
-- * Instagram Login (token_kind 'instagram_user') shares no Pages: its pending connection holds exactly
--   one entry in `pages`, the account ({instagram_account_id, instagram_user_id, instagram_username,
--   access_token, token_expires_at}, no page_id), so finish reads both kinds the same way.
-- * No API role has any privilege on the table: only the SECURITY DEFINER functions reach it.

create table private.pending_connections (
  -- SHA-256 of the random token handed to the doctor's browser; the token itself is never stored.
  token_hash text primary key
    constraint pending_connections_token_hash_format check (token_hash ~ '^[0-9a-f]{64}$'),
  doctor_id uuid not null references auth.users (id) on delete cascade,
  -- [{ page_id, page_name, instagram_account_id, instagram_username, access_token }], each access_token
  -- encrypted by the edge function and bound to this doctor and that Page (as in doctor_instagram); for
  -- Instagram Login, the one account (see the header), its token bound to this doctor and the account.
  -- Emptied when the connection is used, and by the sweep once it has expired, so no Page token
  -- outlives its purpose.
  pages jsonb not null
    constraint pending_connections_pages_array check (jsonb_typeof(pages) = 'array'),
  created_at timestamptz not null default now(),
  expires_at timestamptz not null,
  used_at timestamptz,
  constraint pending_connections_lifetime check (expires_at > created_at and expires_at <= created_at + interval '1 hour'),
  -- The app-scoped Facebook user who granted the Pages (Facebook path only), and the permissions
  -- granted; copied into the link.
  facebook_user_id text
    constraint pending_connections_facebook_user_id_format check (facebook_user_id ~ '^[0-9]{1,32}$'),
  granted_scopes text[],
  -- Which path the flow took: 'page' (Facebook Login) or 'instagram_user' (Instagram Login), as in
  -- doctor_instagram.token_kind.
  token_kind text not null default 'page'
    constraint pending_connections_token_kind check (token_kind in ('page', 'instagram_user')),
  -- Instagram Login's app-scoped user id (/me's id), for the Instagram app's deauthorize and data
  -- deletion callbacks (forget_instagram_user()); set for instagram_user only, as facebook_user_id is
  -- for page only.
  instagram_user_id text
    constraint pending_connections_instagram_user_id_format check (instagram_user_id ~ '^[0-9]{1,32}$'),
  constraint pending_connections_user_matches_kind check (
    (token_kind = 'instagram_user') = (instagram_user_id is not null)
    and (token_kind = 'page' or facebook_user_id is null)
  )
);

-- Serves the foreign key, the per-doctor count in check_pending_limit() and the delete of a doctor's
-- other pending connections when one is linked.
create index pending_connections_doctor_id_idx on private.pending_connections (doctor_id, expires_at);
-- For the sweep.
create index pending_connections_expires_at_idx on private.pending_connections (expires_at);
-- For forget_facebook_user() and prepare_disconnect()'s "is this Facebook user still needed" check.
create index pending_connections_facebook_user_id_idx on private.pending_connections (facebook_user_id);
-- For forget_instagram_user().
create index pending_connections_instagram_user_id_idx on private.pending_connections (instagram_user_id);

comment on table private.pending_connections is
  'Pages (or, for Instagram Login, the one account) offered by Meta, waiting for the doctor who started the flow to confirm one from their own session.';

revoke all on private.pending_connections from public, anon, authenticated, service_role;

-- The helpers below are not SECURITY DEFINER: they run inside the SECURITY DEFINER functions of
-- 06_start_and_callback.sql and 07_link.sql, with their owner's rights. EXECUTE is revoked from PUBLIC.

-- A name from Meta as doctor_instagram can hold it: without control or bidi-override characters (they
-- could make a message read differently from what it says), cut to the column's length, empty = none.
-- IMMUTABLE: the result depends on the arguments only.
create function private.clip(p_value text, p_length int)
returns text
language sql
immutable
set search_path = ''
as $$
  select left(nullif(regexp_replace(p_value, '[[:cntrl:]\u200e\u200f\u202a-\u202e\u2066-\u2069]', '', 'g'), ''), p_length);
$$;
revoke all on function private.clip(text, int) from public;

-- Raises PT429 too_many_requests (HINT: seconds until the oldest expires) when the doctor already has
-- 10 open (unused, unexpired) pending connections. Called by claim_oauth_state(), so a doctor at the
-- limit is refused before any call to Meta, and by create_pending_connection() under its per-doctor lock.
create function private.check_pending_limit(p_doctor_id uuid)
returns void
language plpgsql
set search_path = ''
as $$
declare
  open_connections int;
  retry_after_seconds int;
begin
  select count(*), ceil(extract(epoch from min(expires_at) - now()))
  into open_connections, retry_after_seconds
  from private.pending_connections
  where doctor_id = p_doctor_id and used_at is null and expires_at > now();
  if open_connections >= 10 then
    raise exception using
      errcode = 'PT429',
      message = 'Too many connections are waiting for confirmation; wait for one to expire',
      detail = 'too_many_requests',
      hint = greatest(retry_after_seconds, 1)::text;
  end if;
end;
$$;
revoke all on function private.check_pending_limit(uuid) from public;

-- The pending connection behind a token, locked until commit, or PT400 pending_unknown / pending_used.
-- Expiry and the doctor are checked by the callers, which answer a mismatch differently.
create function private.lock_pending_connection(p_token_hash text)
returns private.pending_connections
language plpgsql
set search_path = ''
as $$
declare
  pending private.pending_connections;
begin
  select * into pending from private.pending_connections where token_hash = p_token_hash for update;
  if not found then
    raise exception using errcode = 'PT400', message = 'This connection is not known', detail = 'pending_unknown';
  elsif pending.used_at is not null then
    raise exception using errcode = 'PT400', message = 'This connection was already used', detail = 'pending_used';
  end if;
  return pending;
end;
$$;
revoke all on function private.lock_pending_connection(text) from public;

-- The Page a finish asked for (or the only one, when none was named), or PT422 page_not_found. For
-- Instagram Login, the one account (a finish names no Page; an account id naming it is accepted too).
-- STABLE: it only reads its arguments.
create function private.pending_page(p_pending private.pending_connections, p_page_id text)
returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
  page jsonb;
begin
  if p_pending.token_kind = 'instagram_user' then
    if jsonb_array_length(p_pending.pages) = 1
       and (p_page_id is null or p_page_id = p_pending.pages -> 0 ->> 'instagram_account_id') then
      return p_pending.pages -> 0;
    end if;
    raise exception using errcode = 'PT422', message = 'That account is not the one shared', detail = 'page_not_found';
  end if;
  if p_page_id is null and jsonb_array_length(p_pending.pages) = 1 then
    return p_pending.pages -> 0;
  end if;
  select candidate into page from jsonb_array_elements(p_pending.pages) as candidate
  where candidate ->> 'page_id' = p_page_id;
  if page is null then
    raise exception using errcode = 'PT422', message = 'That Page is not among the Pages shared', detail = 'page_not_found';
  end if;
  return page;
end;
$$;
revoke all on function private.pending_page(private.pending_connections, text) from public;

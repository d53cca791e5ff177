-- The RPCs behind the start of a link (instagram-connect) and Meta's redirect (instagram-callback):
-- record a one-time state, claim it, and store what Meta returned as a pending connection (the Pages of
-- Facebook Login, or the one account of Instagram Login). The state works the same for both paths.
--
-- Like every function the edge functions call (06, 07 and 08):
-- * In `public`, because PostgREST calls only functions of an exposed schema; what they work on (the
--   `private` tables, doctor_instagram's token column) is out of reach of every client role.
-- * SECURITY DEFINER, so they run with the owner's rights on those tables; with search_path = '' and
--   every name schema-qualified, so nothing on a caller's search path can stand in for an object.
-- * Executable by service_role only, the role of the edge functions' secret key: EXECUTE is revoked
--   from PUBLIC (PostgreSQL grants it on every new function) and from anon and authenticated (Supabase's
--   default privileges grant them new functions in `public`). They take the doctor's id as an argument,
--   which the edge function has taken from the doctor's verified JWT: a doctor allowed to call them over
--   /rest/v1/rpc could act as any doctor.
-- * Errors a caller should see are raised as SQLSTATE PTxyz (PostgREST answers HTTP xyz) with a code of
--   the catalogue in supabase/functions/_shared/errors.ts in DETAIL (and, for a 429, the seconds to wait
--   in HINT); supabase/functions/_shared/database.ts maps them.

-- Records a state for a doctor: refused with PT429 too_many_requests when the doctor already has 10
-- states within their lifetime (created, not yet expired), whether still open, used by a callback or
-- cancelled at Meta (a cancel also uses the state up). So a doctor starts at most 10 flows per state
-- lifetime (INSTAGRAM_STATE_TTL_SECONDS, 10 minutes by default, at most an hour), and start-then-cancel
-- rounds cannot pile up rows: a doctor holds at most 10 live states, plus the expired ones the sweep
-- deletes an hour after they expired. HINT: the seconds until the oldest of them expires and frees a
-- place (Retry-After). The per-doctor advisory lock makes count-then-insert atomic, so parallel connects
-- cannot exceed the limit. Sweeps before inserting.
create function public.create_oauth_state(p_doctor_id uuid, p_nonce_hash text, p_expires_at timestamptz)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  live_states int;
  retry_after_seconds int;
begin
  perform pg_advisory_xact_lock(hashtextextended('private.oauth_states:' || p_doctor_id::text, 0));
  select count(*), ceil(extract(epoch from min(expires_at) - now()))
  into live_states, retry_after_seconds
  from private.oauth_states
  where doctor_id = p_doctor_id and expires_at > now();
  if live_states >= 10 then
    raise exception using
      errcode = 'PT429',
      message = 'Too many connection attempts have been started; wait for one to expire',
      detail = 'too_many_requests',
      hint = greatest(retry_after_seconds, 1)::text;
  end if;

  perform private.sweep_expired();
  insert into private.oauth_states (nonce_hash, doctor_id, expires_at)
  values (p_nonce_hash, p_doctor_id, p_expires_at);
end;
$$;
revoke all on function public.create_oauth_state(uuid, text, timestamptz) from public, anon, authenticated;
grant execute on function public.create_oauth_state(uuid, text, timestamptz) to service_role;

-- One attempt per state: marks it used, or raises why it cannot be (unknown, another doctor's, used,
-- expired). The row lock makes parallel duplicates wait and then see it used. Called before any Meta
-- call (also for a cancelled or failed attempt), so whatever happens after (Meta error, timeout,
-- cancel), the state can never be used again. A doctor whose pending connections are full is refused
-- here too, before Meta; that refusal rolls back, so the state stays usable.
create function public.claim_oauth_state(p_doctor_id uuid, p_nonce_hash text)
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.check_pending_limit(p_doctor_id);
  perform private.use_oauth_state(p_nonce_hash, p_doctor_id, true);
end;
$$;
revoke all on function public.claim_oauth_state(uuid, text) from public, anon, authenticated;
grant execute on function public.claim_oauth_state(uuid, text) to service_role;

-- Stores a pending connection for ten minutes and returns its expiry. Validates the Facebook user id
-- and the Pages (1 to 100 objects, numeric ids, encrypted tokens of at most 4096 characters; else SQLSTATE
-- 22023) and cuts names with private.clip(), so the Pages that finish later copies into doctor_instagram
-- meet its CHECKs (granted_scopes is not checked here; doctor_instagram allows at most 100). Under a
-- per-doctor advisory lock: at most 10 open pending connections (PT429), then the sweep, then the insert.
create function public.create_pending_connection(
  p_token_hash text,
  p_doctor_id uuid,
  p_pages jsonb,
  p_facebook_user_id text,
  p_granted_scopes text[]
)
returns timestamptz
language plpgsql
security definer
set search_path = ''
as $$
declare
  pages jsonb;
  created private.pending_connections;
begin
  if coalesce(p_facebook_user_id, '') !~ '^[0-9]{1,32}$' then
    raise exception using errcode = '22023', message = 'p_facebook_user_id must be the numeric app-scoped id';
  end if;
  if jsonb_typeof(p_pages) is distinct from 'array'
     or jsonb_array_length(p_pages) not between 1 and 100
     or exists (
       select 1 from jsonb_array_elements(p_pages) as page
       where jsonb_typeof(page) <> 'object'
          or coalesce(page ->> 'page_id', '') !~ '^[0-9]{1,32}$'
          or coalesce(page ->> 'instagram_account_id', '') !~ '^[0-9]{1,32}$'
          or coalesce(page ->> 'access_token', '') !~ '^v[0-9]+\.'
          or char_length(page ->> 'access_token') > 4096
     )
  then
    raise exception using errcode = '22023', message = 'p_pages must be 1 to 100 Pages with ids and encrypted tokens';
  end if;

  select jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
    'page_id', page ->> 'page_id',
    'page_name', private.clip(page ->> 'page_name', 255),
    'instagram_account_id', page ->> 'instagram_account_id',
    'instagram_username', private.clip(page ->> 'instagram_username', 64),
    'access_token', page ->> 'access_token'
  )) order by position)
  into pages
  from jsonb_array_elements(p_pages) with ordinality as item(page, position);

  perform pg_advisory_xact_lock(hashtextextended('private.pending_connections:' || p_doctor_id::text, 0));
  perform private.check_pending_limit(p_doctor_id);
  perform private.sweep_expired();

  insert into private.pending_connections (token_hash, doctor_id, pages, expires_at, facebook_user_id, granted_scopes)
  values (p_token_hash, p_doctor_id, pages, now() + interval '10 minutes', p_facebook_user_id, p_granted_scopes)
  returning * into created;
  return created.expires_at;
end;
$$;
revoke all on function public.create_pending_connection(text, uuid, jsonb, text, text[]) from public, anon, authenticated;
grant execute on function public.create_pending_connection(text, uuid, jsonb, text, text[]) to service_role;

-- Instagram Login's counterpart of create_pending_connection(): stores the one account the doctor signed
-- in with (no Page, no Facebook user) for ten minutes and returns its expiry. p_account is
-- { instagram_account_id (/me's user_id: the professional account id webhooks name), instagram_user_id
-- (/me's id, app-scoped), instagram_username?, access_token (encrypted, bound to this doctor and the
-- account), token_expires_at? (when Meta says the long-lived token expires) }. Validated as
-- create_pending_connection() validates Pages (else SQLSTATE 22023), the username cut with
-- private.clip(); the same per-doctor lock, limit of 10 open pending connections (PT429) and sweep.
create function public.create_instagram_pending_connection(
  p_token_hash text,
  p_doctor_id uuid,
  p_account jsonb,
  p_granted_scopes text[]
)
returns timestamptz
language plpgsql
security definer
set search_path = ''
as $$
declare
  expires timestamptz;
  created private.pending_connections;
begin
  if jsonb_typeof(p_account) is distinct from 'object'
     or coalesce(p_account ->> 'instagram_account_id', '') !~ '^[0-9]{1,32}$'
     or coalesce(p_account ->> 'instagram_user_id', '') !~ '^[0-9]{1,32}$'
     or coalesce(p_account ->> 'access_token', '') !~ '^v[0-9]+\.'
     or char_length(p_account ->> 'access_token') > 4096
  then
    raise exception using errcode = '22023', message = 'p_account must hold the account id, the Instagram user id and an encrypted token';
  end if;
  begin
    expires := (p_account ->> 'token_expires_at')::timestamptz;
  exception when others then
    raise exception using errcode = '22023', message = 'p_account.token_expires_at must be a time';
  end;

  perform pg_advisory_xact_lock(hashtextextended('private.pending_connections:' || p_doctor_id::text, 0));
  perform private.check_pending_limit(p_doctor_id);
  perform private.sweep_expired();

  insert into private.pending_connections (
    token_hash, doctor_id, pages, expires_at, granted_scopes, token_kind, instagram_user_id
  )
  values (
    p_token_hash, p_doctor_id,
    jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
      'instagram_account_id', p_account ->> 'instagram_account_id',
      'instagram_user_id', p_account ->> 'instagram_user_id',
      'instagram_username', private.clip(p_account ->> 'instagram_username', 64),
      'access_token', p_account ->> 'access_token',
      'token_expires_at', expires
    ))),
    now() + interval '10 minutes', p_granted_scopes, 'instagram_user', p_account ->> 'instagram_user_id'
  )
  returning * into created;
  return created.expires_at;
end;
$$;
revoke all on function public.create_instagram_pending_connection(text, uuid, jsonb, text[]) from public, anon, authenticated;
grant execute on function public.create_instagram_pending_connection(text, uuid, jsonb, text[]) to service_role;

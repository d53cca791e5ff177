-- Keeping links alive: the RPCs behind instagram-maintenance (a scheduled POST with the project's
-- secret key) and the flag any holder of a stored token raises when Meta refuses it.
--
-- Why: Meta ends Page tokens early (a password change, a lost Page role, the app removed in the
-- doctor's Facebook settings), data access expires ("Data Access Expiration"), a subscription can
-- disappear, and an Instagram Login token expires after 60 days unless it is refreshed ("Refresh Access
-- Token"). Without a check the dashboard says "Connected" while nothing arrives.
--
-- One maintenance run:
-- 1. lease_instagram_links() leases up to 50 links, least recently checked first, for a few minutes.
--    Row locks cannot hold them: they end with each RPC, and the Meta calls happen between RPCs. A
--    lease does: a second run at once skips leased links (skip locked while it leases, then the lease).
-- 2. The function asks Meta about each (debug_token, the Page's subscribed apps; it restores a missing
--    subscription; an Instagram Login token due for it is refreshed first and stored with
--    record_instagram_token_refresh()) and records the outcome with record_instagram_link_check(),
--    which also ends the lease.
--    An outcome about a token the link no longer holds (the doctor reconnected meanwhile) is dropped.
-- 3. Tokens not under the primary encryption key are re-encrypted (links_to_reencrypt(),
--    reencrypt_instagram_tokens()), compare-and-swap, so two runs at once cannot undo each other.
-- 4. run_instagram_sweeps() runs the housekeeping: expired states and pending connections, and the
--    webhook events' retention.
--
-- Same rules as 06_start_and_callback.sql: in `public` for PostgREST, SECURITY DEFINER with
-- search_path = '', executable by service_role only, errors as PTxyz with the catalogue code in DETAIL.
-- Health bookkeeping is not audited and does not touch updated_at (01, 02); status changes are
-- audited (instagram.status_changed), and re-encryption (instagram.token_reencrypted).

-- Leases up to p_limit (1 to 50) links whose lease is free, least recently checked first, for
-- p_lease_seconds (10 to 900). Answers them as the function needs them: the Page (null for Instagram
-- Login), the account, its encrypted token (the check's compare-and-swap key), what the link is and
-- when its token expires and was last obtained (the refresh rule), never a doctor's name.
create function public.lease_instagram_links(p_lease_id uuid, p_limit int default 50, p_lease_seconds int default 300)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  leased jsonb;
begin
  if p_lease_id is null or p_limit is null or p_limit not between 1 and 50
     or p_lease_seconds is null or p_lease_seconds not between 10 and 900 then
    raise exception using errcode = 'PT400', message = 'a lease id, a limit of 1 to 50 and 10 to 900 seconds are required', detail = 'invalid_request';
  end if;
  -- A disconnect that died: its mark ran out, and the link holds its subscription again (a holder
  -- change: the version moves, 12); checked_at null, it comes first below.
  update public.doctor_instagram set disconnecting_until = null where disconnecting_until <= now();
  with candidates as (
    select doctor_id from public.doctor_instagram
    where (lease_until is null or lease_until < now()) and disconnecting_until is null
    order by checked_at nulls first, doctor_id
    limit p_limit
    for update skip locked
  ), taken as (
    update public.doctor_instagram as link
    set lease_id = p_lease_id, lease_until = now() + make_interval(secs => p_lease_seconds)
    from candidates
    where link.doctor_id = candidates.doctor_id
    returning link.*
  )
  select coalesce(jsonb_agg(jsonb_build_object(
    'doctor_id', taken.doctor_id,
    'page_id', taken.instagram_page_id,
    'instagram_account_id', taken.instagram_business_account_id,
    'access_token', taken.instagram_access_token,
    'token_kind', taken.token_kind,
    'token_expires_at', taken.token_expires_at,
    'token_refreshed_at', taken.token_refreshed_at,
    'status', taken.status,
    'status_reason', taken.status_reason
  ) order by taken.checked_at nulls first, taken.doctor_id), '[]'::jsonb)
  into leased
  from taken;
  return leased;
end;
$$;
revoke all on function public.lease_instagram_links(uuid, int, int) from public, anon, authenticated;
grant execute on function public.lease_instagram_links(uuid, int, int) to service_role;

-- 22023 unless p_reason (null: none) may be the status_reason of a link of p_token_kind: instagram_*
-- reasons for Instagram Login links only, the others for Page links only (as the CHECK
-- doctor_instagram_reason_matches_kind, 01, says; raised here with a message that names the mistake).
-- IMMUTABLE: it depends on its arguments only. Not SECURITY DEFINER: it reads nothing.
create function private.check_reason_kind(p_token_kind text, p_reason text)
returns void
language plpgsql
immutable
set search_path = ''
as $$
begin
  if p_reason is not null and (p_token_kind = 'instagram_user') <> starts_with(p_reason, 'instagram_') then
    raise exception using errcode = '22023',
      message = format('the reason %s is not for a link of kind %s', p_reason, p_token_kind);
  end if;
end;
$$;
revoke all on function private.check_reason_kind(text, text) from public;

-- Records one check under this run's lease and ends the lease. p_checked_token is the encrypted token
-- the check used: when the link holds another one by now (reconnected, or re-encrypted by another
-- run), the lease is no longer this run's, or a disconnect is in progress, the outcome is dropped
-- ('stale') and nothing changes.
-- p_reason null means active; a reason of the other kind of link (instagram_* for a Page link, or a
-- Page reason for an Instagram Login link) is refused with 22023. Answers 'unchanged', 'status_changed'
-- or 'stale'.
create function public.record_instagram_link_check(
  p_doctor_id uuid,
  p_lease_id uuid,
  p_checked_token text,
  p_reason text,
  p_reconnect_by timestamptz default null,
  p_token_expires_at timestamptz default null,
  p_correlation_id text default null
)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  link public.doctor_instagram;
  new_status text := case when p_reason is null then 'active' else 'needs_reconnect' end;
begin
  select * into link from public.doctor_instagram where doctor_id = p_doctor_id for update;
  if not found or link.lease_id is distinct from p_lease_id then
    return 'stale';
  elsif link.instagram_access_token is distinct from p_checked_token or link.disconnecting_until is not null then
    -- Reconnected, re-encrypted, or being disconnected (12_subscriptions.sql): not what was checked.
    update public.doctor_instagram set lease_id = null, lease_until = null where doctor_id = p_doctor_id;
    return 'stale';
  end if;
  perform private.check_reason_kind(link.token_kind, p_reason);
  perform set_config('app.actor_role', 'maintenance', true);
  perform set_config('app.correlation_id', coalesce(p_correlation_id, ''), true);
  update public.doctor_instagram
  set status = new_status,
      status_reason = p_reason,
      reconnect_by = p_reconnect_by,
      token_expires_at = p_token_expires_at,
      checked_at = now(),
      lease_id = null,
      lease_until = null
  where doctor_id = p_doctor_id;
  return case when link.status is distinct from new_status or link.status_reason is distinct from p_reason
    then 'status_changed' else 'unchanged' end;
end;
$$;
revoke all on function public.record_instagram_link_check(uuid, uuid, text, text, timestamptz, timestamptz, text)
  from public, anon, authenticated;
grant execute on function public.record_instagram_link_check(uuid, uuid, text, text, timestamptz, timestamptz, text)
  to service_role;

-- Flags a link needs_reconnect when Meta refused its token (a 190 wherever the token is used: the
-- webhook worker, a function). Only while the link still holds that token (p_stored_token, as stored),
-- so a late failure of an old token never flags a link the doctor has just reconnected. A reason of the
-- other kind of link is refused with 22023. Answers whether the link was flagged by this call.
create function public.flag_instagram_link(
  p_doctor_id uuid,
  p_stored_token text,
  p_reason text,
  p_correlation_id text default null
)
returns boolean
language plpgsql
security definer
set search_path = ''
as $$
declare
  flagged int;
  kind text;
begin
  select token_kind into kind from public.doctor_instagram
  where doctor_id = p_doctor_id and instagram_access_token = p_stored_token;
  if found then
    perform private.check_reason_kind(kind, p_reason);
  end if;
  perform set_config('app.correlation_id', coalesce(p_correlation_id, ''), true);
  -- The lease ends too: a maintenance run that found the token well before this refusal must not record
  -- its older outcome over the flag.
  update public.doctor_instagram
  set status = 'needs_reconnect', status_reason = p_reason, lease_id = null, lease_until = null
  where doctor_id = p_doctor_id and instagram_access_token = p_stored_token
    and status_reason is distinct from p_reason;
  get diagnostics flagged = row_count;
  return flagged > 0;
end;
$$;
revoke all on function public.flag_instagram_link(uuid, text, text, text) from public, anon, authenticated;
grant execute on function public.flag_instagram_link(uuid, text, text, text) to service_role;

-- Ends this run's leases on the links it did not record (deferred at Meta's rate limit, or failed), so
-- the next run may take them at once. Answers how many.
create function public.release_instagram_links(p_lease_id uuid)
returns int
language plpgsql
security definer
set search_path = ''
as $$
declare
  released int;
begin
  update public.doctor_instagram set lease_id = null, lease_until = null where lease_id = p_lease_id;
  get diagnostics released = row_count;
  return released;
end;
$$;
revoke all on function public.release_instagram_links(uuid) from public, anon, authenticated;
grant execute on function public.release_instagram_links(uuid) to service_role;

-- Up to p_limit (1 to 500) links whose token is not under the primary key (stored as
-- "v2.<p_primary_key_id>."), with what re-encryption needs: the doctor and the Page it is bound to, or,
-- for an Instagram Login link (page_id null), the account.
create function public.links_to_reencrypt(p_primary_key_id text, p_limit int default 50)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  if p_primary_key_id is null or p_primary_key_id !~ '^[a-z0-9][a-z0-9_-]{0,31}$'
     or p_limit is null or p_limit not between 1 and 500 then
    raise exception using errcode = 'PT400', message = 'a key id and a limit of 1 to 500 are required', detail = 'invalid_request';
  end if;
  return coalesce((
    select jsonb_agg(jsonb_build_object(
      'doctor_id', pending.doctor_id,
      'page_id', pending.instagram_page_id,
      'access_token', pending.instagram_access_token,
      'token_kind', pending.token_kind,
      'instagram_account_id', pending.instagram_business_account_id
    ))
    from (
      select doctor_id, instagram_page_id, instagram_access_token, token_kind, instagram_business_account_id
      from public.doctor_instagram
      where not starts_with(instagram_access_token, 'v2.' || p_primary_key_id || '.')
      order by doctor_id
      limit p_limit
    ) as pending
  ), '[]'::jsonb);
end;
$$;
revoke all on function public.links_to_reencrypt(text, int) from public, anon, authenticated;
grant execute on function public.links_to_reencrypt(text, int) to service_role;

-- Stores re-encrypted tokens: p_tokens is [{doctor_id, from, to}], each applied only while the link
-- still holds `from` (compare-and-swap). Audited as instagram.token_reencrypted; not a renewal of the
-- grant, so updated_at stays (app.token_reencryption, 01). Answers how many were stored.
create function public.reencrypt_instagram_tokens(p_tokens jsonb, p_correlation_id text default null)
returns int
language plpgsql
security definer
set search_path = ''
as $$
declare
  stored int;
begin
  if jsonb_typeof(p_tokens) is distinct from 'array' or jsonb_array_length(p_tokens) > 500 then
    raise exception using errcode = 'PT400', message = 'an array of at most 500 tokens is required', detail = 'invalid_request';
  end if;
  perform set_config('app.actor_role', 'maintenance', true);
  perform set_config('app.correlation_id', coalesce(p_correlation_id, ''), true);
  perform set_config('app.audit_action', 'instagram.token_reencrypted', true);
  perform set_config('app.token_reencryption', 'on', true);
  update public.doctor_instagram as link
  set instagram_access_token = item ->> 'to'
  from jsonb_array_elements(p_tokens) as item
  where link.doctor_id = (item ->> 'doctor_id')::uuid
    and link.instagram_access_token = item ->> 'from'
    and item ->> 'to' ~ '^v2\.[a-z0-9][a-z0-9_-]{0,31}\.';
  get diagnostics stored = row_count;
  perform set_config('app.audit_action', '', true);
  perform set_config('app.token_reencryption', '', true);
  return stored;
end;
$$;
revoke all on function public.reencrypt_instagram_tokens(jsonb, text) from public, anon, authenticated;
grant execute on function public.reencrypt_instagram_tokens(jsonb, text) to service_role;

-- The housekeeping a run ends with: expired states and pending connections (private.sweep_expired(),
-- bounded per call), and the webhook events older than p_event_retention_days
-- (INSTAGRAM_EVENT_RETENTION_DAYS). Answers how many events were purged.
create function public.run_instagram_sweeps(p_event_retention_days int default 90)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.sweep_expired();
  return jsonb_build_object('purged_events', public.purge_instagram_events(p_event_retention_days));
end;
$$;
revoke all on function public.run_instagram_sweeps(int) from public, anon, authenticated;
grant execute on function public.run_instagram_sweeps(int) to service_role;

-- Stores a refreshed Instagram Login token under this run's lease, compare-and-swap on the old
-- ciphertext: only while the link still holds p_old_token and this run's lease ('refreshed'), else
-- nothing changes ('stale': the doctor reconnected, or another run took the link). Sets the token, its
-- expiry, token_refreshed_at = now() and reconnect_by = null (the refresh moved the deadline). Audited
-- as instagram.token_refreshed (token_rotated, never the token); not a new grant, so updated_at stays
-- (app.token_refresh, 01): Meta's deauthorize compares with updated_at. The lease stays: the run goes on
-- to check the link with its new token. 22023 for a Page link or a value that is not ciphertext.
create function public.record_instagram_token_refresh(
  p_doctor_id uuid,
  p_lease_id uuid,
  p_old_token text,
  p_new_token text,
  p_expires_at timestamptz
)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  link public.doctor_instagram;
begin
  if coalesce(p_new_token, '') !~ '^v[0-9]+\.' or char_length(p_new_token) > 4096 then
    raise exception using errcode = '22023', message = 'p_new_token must be the encrypted token';
  end if;
  select * into link from public.doctor_instagram where doctor_id = p_doctor_id for update;
  if not found or link.lease_id is distinct from p_lease_id or link.lease_until <= now()
     or link.instagram_access_token is distinct from p_old_token then
    return 'stale';
  elsif link.token_kind <> 'instagram_user' then
    raise exception using errcode = '22023', message = 'only an Instagram Login token is refreshed';
  end if;
  perform set_config('app.actor_role', 'maintenance', true);
  perform set_config('app.audit_action', 'instagram.token_refreshed', true);
  perform set_config('app.token_refresh', 'on', true);
  update public.doctor_instagram
  set instagram_access_token = p_new_token,
      token_expires_at = p_expires_at,
      token_refreshed_at = now(),
      reconnect_by = null
  where doctor_id = p_doctor_id;
  perform set_config('app.audit_action', '', true);
  perform set_config('app.token_refresh', '', true);
  perform set_config('app.actor_role', '', true);
  return 'refreshed';
end;
$$;
revoke all on function public.record_instagram_token_refresh(uuid, uuid, text, text, timestamptz)
  from public, anon, authenticated;
grant execute on function public.record_instagram_token_refresh(uuid, uuid, text, text, timestamptz) to service_role;

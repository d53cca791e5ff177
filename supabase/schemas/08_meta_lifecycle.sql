-- The link's life with Meta after it is made: the doctor's disconnect, and Meta's Deauthorize and
-- Data Deletion Request callbacks (instagram-callback: /deauthorize, /data-deletion), from the Facebook
-- app and from the Instagram app (Instagram Login).
--
-- Why here: the Facebook app's callbacks name only the app-scoped Facebook user id, so links and
-- pending connections keep it (01, 04) to be found again; the Instagram app's callbacks name an
-- Instagram user, and Meta's docs do not settle which id (see forget_instagram_user()); a real
-- disconnect must know the token, the account, the Facebook user and whether another doctor still needs
-- that user's grant; and every removal must say in the audit trail who asked (the doctor, or Meta) and
-- what Meta answered.
--
-- * Disconnect (DELETE /instagram-connect) is prepare_disconnect() (what the function needs for Meta);
--   then the function unsubscribes the Page (or the Instagram account) and, unless another doctor still
--   needs it, revokes the Facebook user's grant; then disconnect_doctor_instagram() deletes the link
--   whatever Meta answered (the doctor's intent wins) and audits Meta's outcome. Doctors cannot delete rows themselves
--   (01_doctor_instagram.sql), so no disconnect skips Meta.
-- * forget_facebook_user() and forget_instagram_user() remove what that user had granted when Meta
--   issued the request, audited with actor_role 'meta'; a replayed or late request cannot touch a newer
--   grant.
-- * Data deletion requests are recorded (confirmation code, status, times; no personal data), and a
--   replay of the same signed_request answers the same request and deletes nothing more.
--
-- Same rules as 06_start_and_callback.sql: in `public` for PostgREST, SECURITY DEFINER with
-- search_path = '', executable by service_role only, errors as PTxyz with the catalogue code in DETAIL.

-- ---------------------------------------------------------------------------------------------------
-- Disconnect.

-- The doctor's link as the function needs it to clean up at Meta: its kind, the Page (null for an
-- Instagram Login link), the Instagram account and the (encrypted) token, the Facebook user (null for
-- Instagram Login, so never shared), and whether another doctor still needs that user's grant, through
-- a link or a connection waiting to be finished (then it must not be revoked: one practice manager may link
-- Pages for several doctors). PT404 not_connected when there is no link. It writes (below), so a
-- database that cannot write now (read-only mode, a standby: SQLSTATE 25006; a full disk) refuses here,
-- before the function changes anything at Meta, rather than at disconnect_doctor_instagram() after Meta
-- has unsubscribed the Page.
create function public.prepare_disconnect(p_doctor_id uuid, p_fence_seconds int default 120)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  link public.doctor_instagram;
  run_lease timestamptz;
  run_lease_id uuid;
begin
  select * into link from public.doctor_instagram where doctor_id = p_doctor_id for update;
  if not found then
    raise exception using errcode = 'PT404', message = 'No Instagram account is connected', detail = 'not_connected';
  end if;
  -- A maintenance run that holds the link (its lease; a disconnect takes none) may still write to Meta's
  -- subscription: the function leaves the revoke to that run's end (defer_revoke(), 12), since a revoke
  -- would kill the token the run needs to converge. A second click finds the same lease.
  if link.lease_until > now() then
    run_lease := link.lease_until;
    run_lease_id := link.lease_id;
  end if;
  -- The link stops holding its subscription (disconnecting_until: a holder change, so its version moves,
  -- 12) for p_fence_seconds (10 to 900: longer than the function's Meta calls), renewed by a second click;
  -- meanwhile no run leases it, its check's outcome is dropped, and the doctor cannot link again. One that
  -- died leaves it to run out: the next run clears it (lease_instagram_links(), a holder change again) and,
  -- checked_at null, checks the link first, converging its subscription back.
  if p_fence_seconds is null or p_fence_seconds not between 10 and 900 then
    raise exception using errcode = 'PT400', message = 'a fence of 10 to 900 seconds is required', detail = 'invalid_request';
  end if;
  update public.doctor_instagram
  set disconnecting_until = greatest(disconnecting_until, now() + make_interval(secs => p_fence_seconds)),
      checked_at = null
  where doctor_id = p_doctor_id;
  return jsonb_build_object(
    'leased', run_lease is not null,
    'leased_until', run_lease,
    'leased_by', run_lease_id,
    'token_kind', link.token_kind,
    'page_id', link.instagram_page_id,
    'instagram_account_id', link.instagram_business_account_id,
    'access_token', link.instagram_access_token,
    'facebook_user_id', link.facebook_user_id,
    'facebook_user_shared', link.facebook_user_id is not null and (
      exists (
        select 1 from public.doctor_instagram as other
        where other.facebook_user_id = link.facebook_user_id and other.doctor_id <> p_doctor_id
      ) or exists (
        select 1 from private.pending_connections as waiting
        where waiting.facebook_user_id = link.facebook_user_id and waiting.doctor_id <> p_doctor_id
          and waiting.used_at is null and waiting.expires_at > now()
      )
    )
  );
end;
$$;
revoke all on function public.prepare_disconnect(uuid, int) from public, anon, authenticated;
grant execute on function public.prepare_disconnect(uuid, int) to service_role;

-- Deletes the doctor's link, whatever account it holds by now, audited (through app.audit_metadata)
-- with what Meta said, and returns what was deleted ({page_id, access_token, token_kind,
-- instagram_account_id, facebook_user_id}, so the function can unsubscribe, and revoke, what was linked
-- meanwhile from another tab),
-- or null when there was nothing left.
create function public.disconnect_doctor_instagram(p_doctor_id uuid, p_meta jsonb, p_correlation_id text default null)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  deleted public.doctor_instagram;
begin
  perform set_config('app.actor_id', p_doctor_id::text, true);
  perform set_config('app.correlation_id', coalesce(p_correlation_id, ''), true);
  perform set_config('app.audit_metadata', jsonb_build_object('meta', coalesce(p_meta, '{}'::jsonb))::text, true);
  delete from public.doctor_instagram where doctor_id = p_doctor_id returning * into deleted;
  perform set_config('app.audit_metadata', '', true);
  return case when deleted.doctor_id is not null then
    jsonb_build_object('page_id', deleted.instagram_page_id, 'access_token', deleted.instagram_access_token,
      'token_kind', deleted.token_kind, 'instagram_account_id', deleted.instagram_business_account_id,
      'facebook_user_id', deleted.facebook_user_id)
  end;
end;
$$;
revoke all on function public.disconnect_doctor_instagram(uuid, jsonb, text) from public, anon, authenticated;
grant execute on function public.disconnect_doctor_instagram(uuid, jsonb, text) to service_role;

-- ---------------------------------------------------------------------------------------------------
-- Meta's callbacks.

-- Everything of one Facebook user that existed when Meta issued the request (p_issued_at, whole
-- seconds): their links (by updated_at), their pending connections (by created_at), and the open states
-- the doctors concerned had started by then (a state holds no Facebook data, but a flow that would
-- bring that user's data back should not survive the request). Anything newer is a new grant and
-- stays, so a replayed or late request is harmless. Actor: actor_role 'meta', no actor_id. Each deleted
-- link is audited by the trigger with p_action (instagram.deauthorized or instagram.deleted_by_meta),
-- and each doctor whose pending connections were deleted gets one entry with their number; deleted
-- states are only counted in the answer. Returns the three counts. Called by /deauthorize directly and
-- by request_data_deletion().
create function public.forget_facebook_user(
  p_facebook_user_id text,
  p_action text,
  p_issued_at timestamptz,
  p_correlation_id text default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  issued_before timestamptz;
  doctors uuid[];
  links int;
  pending int := 0;
  states int;
  per_doctor record;
begin
  -- issued_at counts whole seconds: everything before the end of that second was granted before.
  issued_before := p_issued_at + interval '1 second';
  if p_facebook_user_id !~ '^[0-9]{1,32}$' or p_issued_at is null
     or p_action not in ('instagram.deauthorized', 'instagram.deleted_by_meta') then
    raise exception using errcode = '22023', message = 'a numeric Facebook user id, the request time and a Meta action are required';
  end if;
  perform set_config('app.actor_id', '', true);
  perform set_config('app.actor_role', 'meta', true);
  perform set_config('app.audit_action', p_action, true);
  perform set_config('app.correlation_id', coalesce(p_correlation_id, ''), true);

  select array_agg(distinct doctor_id) into doctors from (
    select doctor_id from public.doctor_instagram
    where facebook_user_id = p_facebook_user_id and updated_at < issued_before
    union all
    select doctor_id from private.pending_connections
    where facebook_user_id = p_facebook_user_id and created_at < issued_before
  ) as concerned;

  delete from public.doctor_instagram where facebook_user_id = p_facebook_user_id and updated_at < issued_before;
  get diagnostics links = row_count;

  for per_doctor in
    with deleted as (
      delete from private.pending_connections
      where facebook_user_id = p_facebook_user_id and created_at < issued_before
      returning doctor_id
    )
    select doctor_id, count(*)::int as n from deleted group by doctor_id
  loop
    pending := pending + per_doctor.n;
    perform private.append_audit(p_action, per_doctor.doctor_id::text,
      jsonb_build_object('pending_connections_deleted', per_doctor.n));
  end loop;

  delete from private.oauth_states
  where doctor_id = any(coalesce(doctors, '{}')) and consumed_at is null and created_at < issued_before;
  get diagnostics states = row_count;

  perform set_config('app.actor_role', '', true);
  perform set_config('app.audit_action', '', true);
  return jsonb_build_object('links_deleted', links, 'pending_connections_deleted', pending, 'states_deleted', states);
end;
$$;
revoke all on function public.forget_facebook_user(text, text, timestamptz, text) from public, anon, authenticated;
grant execute on function public.forget_facebook_user(text, text, timestamptz, text) to service_role;

-- Meta's data deletion requests. No personal data: neither the Facebook user id nor the request.
-- The confirmation code is random (the edge function makes it: 16 random bytes, base64url); Meta shows
-- it to the user with the status URL (GET /instagram-callback/data-deletion?code=...).
create table private.data_deletion_requests (
  confirmation_code text primary key
    constraint data_deletion_requests_code_format check (confirmation_code ~ '^[A-Za-z0-9_-]{16,64}$'),
  -- A keyed hash (HMAC-SHA256, hex) of the signed_request's signature, never the request or the user id:
  -- the same request delivered twice is one request.
  request_key text not null unique
    constraint data_deletion_requests_request_key_format check (request_key ~ '^[0-9a-f]{64}$'),
  -- Inserted as 'received' and set to 'completed' in the same transaction, once the deletion is done.
  status text not null default 'received'
    constraint data_deletion_requests_status check (status in ('received', 'completed')),
  requested_at timestamptz not null default now(),
  completed_at timestamptz,
  -- How many stored webhook events (09_instagram_events.sql) the request removed: the status reports it.
  events_deleted int not null default 0
);
comment on table private.data_deletion_requests is
  'Meta Data Deletion Requests: a confirmation code, a keyed hash of the request (to recognise a replay), its status and times; no personal data.';
revoke all on private.data_deletion_requests from public, anon, authenticated, service_role;

-- Records a data deletion request and carries it out (forget_facebook_user() with
-- instagram.deleted_by_meta, and the webhook events received through that user's links, which a
-- disconnect or a deauthorize leaves in place) in the same transaction; a replay (same request_key) changes nothing and
-- answers the request recorded the first time (replay: true).
create function public.request_data_deletion(
  p_facebook_user_id text,
  p_request_key text,
  p_confirmation_code text,
  p_issued_at timestamptz,
  p_correlation_id text default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  request private.data_deletion_requests;
  events int;
begin
  insert into private.data_deletion_requests (confirmation_code, request_key)
  values (p_confirmation_code, p_request_key)
  on conflict (request_key) do nothing
  returning * into request;
  if not found then
    select * into request from private.data_deletion_requests where request_key = p_request_key;
    return jsonb_build_object('confirmation_code', request.confirmation_code, 'status', request.status, 'replay', true);
  end if;

  perform public.forget_facebook_user(p_facebook_user_id, 'instagram.deleted_by_meta', p_issued_at, p_correlation_id);
  -- As forget_facebook_user() counts time: what arrived before the end of the request's second.
  delete from public.instagram_events
  where facebook_user_id = p_facebook_user_id and received_at < p_issued_at + interval '1 second';
  get diagnostics events = row_count;
  update private.data_deletion_requests set status = 'completed', completed_at = now(), events_deleted = events
  where confirmation_code = request.confirmation_code
  returning * into request;
  return jsonb_build_object('confirmation_code', request.confirmation_code, 'status', request.status, 'replay', false,
    'events_deleted', request.events_deleted);
end;
$$;
revoke all on function public.request_data_deletion(text, text, text, timestamptz, text) from public, anon, authenticated;
grant execute on function public.request_data_deletion(text, text, text, timestamptz, text) to service_role;

-- A request's status for the status URL, which anyone holding the code may open (through the edge
-- function: the function itself stays service_role only). PT404 deletion_request_unknown for an
-- unknown code. STABLE: it only reads.
create function public.data_deletion_status(p_confirmation_code text)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  request private.data_deletion_requests;
begin
  select * into request from private.data_deletion_requests where confirmation_code = p_confirmation_code;
  if not found then
    raise exception using errcode = 'PT404', message = 'No data deletion request has this code', detail = 'deletion_request_unknown';
  end if;
  return jsonb_build_object(
    'confirmation_code', request.confirmation_code,
    'status', request.status,
    'requested_at', request.requested_at,
    'completed_at', request.completed_at,
    'events_deleted', request.events_deleted
  );
end;
$$;
revoke all on function public.data_deletion_status(text) from public, anon, authenticated;
grant execute on function public.data_deletion_status(text) to service_role;

-- ---------------------------------------------------------------------------------------------------
-- The Instagram app's callbacks (Instagram Login).

-- forget_facebook_user() for an Instagram Login user: everything of theirs that existed when Meta issued
-- the request, by the same clock rules and audit. Which id the Instagram app's signed_request carries in
-- user_id is not settled by Meta's docs (the app-scoped id of /me's `id`, or the professional account id
-- of /me's `user_id`), so both are matched: instagram_user links whose instagram_user_id or
-- instagram_business_account_id is p_instagram_user_id, and instagram_user pending connections whose
-- instagram_user_id or account entry is. A Page link is never matched: the Instagram app never granted
-- it (its own Facebook app's callbacks end it). Returns the three counts.
create function public.forget_instagram_user(
  p_instagram_user_id text,
  p_action text,
  p_issued_at timestamptz,
  p_correlation_id text default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  issued_before timestamptz;
  doctors uuid[];
  links int;
  pending int := 0;
  states int;
  per_doctor record;
begin
  issued_before := p_issued_at + interval '1 second';
  if p_instagram_user_id !~ '^[0-9]{1,32}$' or p_issued_at is null
     or p_action not in ('instagram.deauthorized', 'instagram.deleted_by_meta') then
    raise exception using errcode = '22023', message = 'a numeric Instagram user id, the request time and a Meta action are required';
  end if;
  perform set_config('app.actor_id', '', true);
  perform set_config('app.actor_role', 'meta', true);
  perform set_config('app.audit_action', p_action, true);
  perform set_config('app.correlation_id', coalesce(p_correlation_id, ''), true);

  select array_agg(distinct doctor_id) into doctors from (
    select doctor_id from public.doctor_instagram
    where token_kind = 'instagram_user' and updated_at < issued_before
      and (instagram_user_id = p_instagram_user_id or instagram_business_account_id = p_instagram_user_id)
    union all
    select doctor_id from private.pending_connections
    where token_kind = 'instagram_user' and created_at < issued_before
      and (instagram_user_id = p_instagram_user_id or pages -> 0 ->> 'instagram_account_id' = p_instagram_user_id)
  ) as concerned;

  delete from public.doctor_instagram
  where token_kind = 'instagram_user' and updated_at < issued_before
    and (instagram_user_id = p_instagram_user_id or instagram_business_account_id = p_instagram_user_id);
  get diagnostics links = row_count;

  for per_doctor in
    with deleted as (
      delete from private.pending_connections
      where token_kind = 'instagram_user' and created_at < issued_before
        and (instagram_user_id = p_instagram_user_id or pages -> 0 ->> 'instagram_account_id' = p_instagram_user_id)
      returning doctor_id
    )
    select doctor_id, count(*)::int as n from deleted group by doctor_id
  loop
    pending := pending + per_doctor.n;
    perform private.append_audit(p_action, per_doctor.doctor_id::text,
      jsonb_build_object('pending_connections_deleted', per_doctor.n));
  end loop;

  delete from private.oauth_states
  where doctor_id = any(coalesce(doctors, '{}')) and consumed_at is null and created_at < issued_before;
  get diagnostics states = row_count;

  perform set_config('app.actor_role', '', true);
  perform set_config('app.audit_action', '', true);
  return jsonb_build_object('links_deleted', links, 'pending_connections_deleted', pending, 'states_deleted', states);
end;
$$;
revoke all on function public.forget_instagram_user(text, text, timestamptz, text) from public, anon, authenticated;
grant execute on function public.forget_instagram_user(text, text, timestamptz, text) to service_role;

-- request_data_deletion() for the Instagram app: recorded in the same table (a replay answers the first
-- request), forget_instagram_user() with instagram.deleted_by_meta, and the webhook events received
-- through that user's Instagram Login links (their instagram_user_id, or their account for events that
-- came through an Instagram Login link, as forget_instagram_user() matches both ids), never events that
-- came through a Page link.
create function public.request_instagram_data_deletion(
  p_instagram_user_id text,
  p_request_key text,
  p_confirmation_code text,
  p_issued_at timestamptz,
  p_correlation_id text default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  request private.data_deletion_requests;
  events int;
begin
  insert into private.data_deletion_requests (confirmation_code, request_key)
  values (p_confirmation_code, p_request_key)
  on conflict (request_key) do nothing
  returning * into request;
  if not found then
    select * into request from private.data_deletion_requests where request_key = p_request_key;
    return jsonb_build_object('confirmation_code', request.confirmation_code, 'status', request.status, 'replay', true);
  end if;

  perform public.forget_instagram_user(p_instagram_user_id, 'instagram.deleted_by_meta', p_issued_at, p_correlation_id);
  delete from public.instagram_events
  where received_at < p_issued_at + interval '1 second' and instagram_user_id is not null
    and (instagram_user_id = p_instagram_user_id or account_id = p_instagram_user_id);
  get diagnostics events = row_count;
  update private.data_deletion_requests set status = 'completed', completed_at = now(), events_deleted = events
  where confirmation_code = request.confirmation_code
  returning * into request;
  return jsonb_build_object('confirmation_code', request.confirmation_code, 'status', request.status, 'replay', false,
    'events_deleted', request.events_deleted);
end;
$$;
revoke all on function public.request_instagram_data_deletion(text, text, text, timestamptz, text) from public, anon, authenticated;
grant execute on function public.request_instagram_data_deletion(text, text, text, timestamptz, text) to service_role;

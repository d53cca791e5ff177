-- The link's life with Meta.
--
-- Why: Meta's Deauthorize and Data Deletion Request callbacks name only the app-scoped Facebook user
-- id, so a link must keep it to be found again; a real disconnect must know the Page token, the
-- Facebook user and whether another doctor's link still needs that user's grant; and every removal
-- must say in the audit trail who asked (the doctor, or Meta) and what Meta answered.
--
-- * doctor_instagram and pending_connections keep facebook_user_id and granted_scopes (neither is a
--   secret; the doctor may read them), indexed for the callbacks;
-- * disconnect is prepare_disconnect (what the function needs for Meta) then disconnect_doctor_instagram
--   (the delete, audited with Meta's outcome); doctors no longer delete rows directly, so no disconnect
--   can skip Meta;
-- * forget_facebook_user (deauthorize, data deletion) removes what that user had granted when Meta issued
--   the request (links, pending connections, the open states of the doctors concerned), audited with
--   actor `meta`; a replayed or late request cannot touch a newer grant;
-- * data deletion requests are recorded (confirmation code, status, times; no personal data) and a
--   replay of the same signed_request answers the same request;
-- * open_pending_connection names the Page a doctor is leaving, so finish unsubscribes it while the
--   doctor still holds it (no other doctor can link it in between).

-- ---------------------------------------------------------------------------------------------------
-- Columns.

alter table public.doctor_instagram
  add column facebook_user_id text
    constraint doctor_instagram_facebook_user_id_format check (facebook_user_id ~ '^[0-9]{1,32}$'),
  add column granted_scopes text[]
    constraint doctor_instagram_granted_scopes_size check (cardinality(granted_scopes) <= 100);
comment on table public.doctor_instagram is
  'Instagram account (via its Facebook Page) linked by each doctor. Written only by link_pending_connection(), removed by disconnect_doctor_instagram() and forget_facebook_user().';
comment on column public.doctor_instagram.facebook_user_id is
  'App-scoped id of the Facebook user who granted the link: what Meta''s deauthorize and data deletion callbacks name.';
create index doctor_instagram_facebook_user_id_idx on public.doctor_instagram (facebook_user_id);
grant select (facebook_user_id, granted_scopes) on public.doctor_instagram to authenticated;

alter table private.pending_connections
  add column facebook_user_id text
    constraint pending_connections_facebook_user_id_format check (facebook_user_id ~ '^[0-9]{1,32}$'),
  add column granted_scopes text[];
create index pending_connections_facebook_user_id_idx on private.pending_connections (facebook_user_id);

-- Every disconnect goes through the function, which also unsubscribes the Page and revokes the grant.
drop policy "Doctors can disconnect their own Instagram link" on public.doctor_instagram;
revoke delete on public.doctor_instagram from authenticated;

-- ---------------------------------------------------------------------------------------------------
-- Audit: Meta as an actor, an action and extra metadata chosen by the caller, new actions.

alter table private.audit_log drop constraint audit_log_action;
alter table private.audit_log add constraint audit_log_action check (action in (
  'instagram.connected', 'instagram.updated', 'instagram.disconnected', 'instagram.link_refused',
  'instagram.deauthorized', 'instagram.deleted_by_meta'
));

-- As before, plus app.actor_role (e.g. 'meta' for Meta's callbacks, which act for no doctor).
create or replace function private.append_audit(p_action text, p_resource_id text, p_metadata jsonb)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  claims jsonb := nullif(current_setting('request.jwt.claims', true), '')::jsonb;
begin
  insert into private.audit_log (actor_id, actor_role, action, resource_type, resource_id, correlation_id, metadata)
  values (
    coalesce(nullif(current_setting('app.actor_id', true), '')::uuid, (claims ->> 'sub')::uuid),
    coalesce(nullif(current_setting('app.actor_role', true), ''), claims ->> 'role', session_user),
    p_action,
    'doctor_instagram',
    p_resource_id,
    nullif(current_setting('app.correlation_id', true), ''),
    p_metadata
  );
end;
$$;

-- As before, except: a delete's action and extra metadata may be set by the function that deletes
-- (app.audit_action, app.audit_metadata), and the Facebook user id and scopes are not copied into the
-- audit trail, so a data deletion request leaves no trace of that user there.
create or replace function private.audit_doctor_instagram()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  hidden text[] := array['instagram_access_token', 'updated_at', 'facebook_user_id', 'granted_scopes'];
  entry_metadata jsonb;
begin
  if tg_op = 'INSERT' then
    perform private.append_audit('instagram.connected', new.doctor_id::text, jsonb_strip_nulls(jsonb_build_object(
      'page_id', new.instagram_page_id,
      'page_name', new.page_name,
      'instagram_username', new.instagram_username,
      'instagram_business_account_id', new.instagram_business_account_id
    )));
  elsif tg_op = 'UPDATE' then
    select jsonb_build_object(
      'changed', coalesce(jsonb_object_agg(after.key, jsonb_build_object('from', before.value, 'to', after.value)), '{}'::jsonb),
      'token_rotated', new.instagram_access_token is distinct from old.instagram_access_token
    )
    into entry_metadata
    from jsonb_each(to_jsonb(new) - hidden) as after
    join jsonb_each(to_jsonb(old) - hidden) as before using (key)
    where after.value is distinct from before.value;
    perform private.append_audit('instagram.updated', new.doctor_id::text, entry_metadata);
  else
    perform private.append_audit(
      coalesce(nullif(current_setting('app.audit_action', true), ''), 'instagram.disconnected'),
      old.doctor_id::text,
      jsonb_strip_nulls(jsonb_build_object(
        'page_id', old.instagram_page_id,
        'instagram_username', old.instagram_username
      )) || coalesce(nullif(current_setting('app.audit_metadata', true), '')::jsonb, '{}'::jsonb)
    );
  end if;
  return null;
end;
$$;

-- ---------------------------------------------------------------------------------------------------
-- Pending connections carry the Facebook user and the granted scopes into the link.

drop function public.create_pending_connection(text, uuid, jsonb);

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

-- As in 20261126000500 (which explains it), plus: when the doctor would move to another Page, the
-- 'ready' answer names the Page they are leaving (with its encrypted token), so finish unsubscribes it
-- while the doctor still holds it: no other doctor can link (and subscribe) it in between.
create or replace function public.open_pending_connection(
  p_doctor_id uuid,
  p_token_hash text,
  p_page_id text default null,
  p_correlation_id text default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  pending private.pending_connections := private.lock_pending_connection(p_token_hash);
  page jsonb;
  current_link public.doctor_instagram;
begin
  if pending.doctor_id <> p_doctor_id then
    delete from private.pending_connections where token_hash = p_token_hash;
    perform set_config('app.actor_id', p_doctor_id::text, true);
    perform set_config('app.correlation_id', coalesce(p_correlation_id, ''), true);
    perform private.append_audit('instagram.link_refused', pending.doctor_id::text, jsonb_build_object(
      'reason', 'session_mismatch',
      'pending_doctor_id', pending.doctor_id,
      'offered_page_ids', (select jsonb_agg(offered ->> 'page_id') from jsonb_array_elements(pending.pages) as offered)
    ));
    return jsonb_build_object('outcome', 'session_mismatch');
  elsif pending.expires_at <= now() then
    raise exception using errcode = 'PT400', message = 'This connection expired', detail = 'pending_expired';
  end if;

  if p_page_id is null and jsonb_array_length(pending.pages) > 1 then
    return jsonb_build_object(
      'outcome', 'choose',
      'expires_at', pending.expires_at,
      'pages', (
        select jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
          'page_id', offered ->> 'page_id',
          'page_name', offered ->> 'page_name',
          'instagram_username', offered ->> 'instagram_username'
        )) order by position)
        from jsonb_array_elements(pending.pages) with ordinality as item(offered, position)
      )
    );
  end if;

  page := private.pending_page(pending, p_page_id);
  if exists (
    select 1 from public.doctor_instagram
    where instagram_page_id = page ->> 'page_id' and doctor_id <> p_doctor_id
  ) then
    perform private.raise_page_already_linked(page);
  end if;
  select * into current_link from public.doctor_instagram where doctor_id = p_doctor_id;
  return jsonb_strip_nulls(jsonb_build_object(
    'outcome', 'ready',
    'page', page,
    'leaving', case when current_link.instagram_page_id <> page ->> 'page_id' then jsonb_build_object(
      'page_id', current_link.instagram_page_id,
      'access_token', current_link.instagram_access_token
    ) end
  ));
end;
$$;

-- As in 20261126000500 (which explains it), plus: the Facebook user and scopes are copied into the link.
create or replace function public.link_pending_connection(
  p_doctor_id uuid,
  p_token_hash text,
  p_page_id text,
  p_correlation_id text default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  pending private.pending_connections := private.lock_pending_connection(p_token_hash);
  page jsonb;
  previous_page_id text;
  linked public.doctor_instagram;
begin
  if pending.doctor_id <> p_doctor_id then
    raise exception using errcode = 'PT403', message = 'This connection was started by another account', detail = 'session_mismatch';
  elsif pending.expires_at <= now() then
    raise exception using errcode = 'PT400', message = 'This connection expired', detail = 'pending_expired';
  end if;
  page := private.pending_page(pending, p_page_id);

  update private.pending_connections set used_at = now(), pages = '[]'::jsonb where token_hash = p_token_hash;
  delete from private.pending_connections
  where doctor_id = p_doctor_id and token_hash <> p_token_hash and used_at is null;
  perform set_config('app.actor_id', p_doctor_id::text, true);
  perform set_config('app.correlation_id', coalesce(p_correlation_id, ''), true);

  if exists (
    select 1 from public.doctor_instagram
    where instagram_page_id = page ->> 'page_id' and doctor_id <> p_doctor_id
  ) then
    perform private.raise_page_already_linked(page);
  end if;

  select instagram_page_id into previous_page_id from public.doctor_instagram where doctor_id = p_doctor_id;

  begin
    insert into public.doctor_instagram as current_link (
      doctor_id, instagram_page_id, instagram_access_token, instagram_username,
      page_name, instagram_business_account_id, facebook_user_id, granted_scopes
    )
    values (
      p_doctor_id, page ->> 'page_id', page ->> 'access_token', page ->> 'instagram_username',
      page ->> 'page_name', page ->> 'instagram_account_id', pending.facebook_user_id, pending.granted_scopes
    )
    on conflict (doctor_id) do update set
      instagram_page_id = excluded.instagram_page_id,
      instagram_access_token = excluded.instagram_access_token,
      instagram_username = excluded.instagram_username,
      page_name = excluded.page_name,
      instagram_business_account_id = excluded.instagram_business_account_id,
      facebook_user_id = excluded.facebook_user_id,
      granted_scopes = excluded.granted_scopes,
      connected_at = case
        when current_link.instagram_page_id = excluded.instagram_page_id then current_link.connected_at
        else now()
      end
    returning * into linked;
  exception when unique_violation then
    perform private.raise_page_already_linked(page);
  end;

  return jsonb_build_object(
    'doctor_id', linked.doctor_id,
    'instagram_page_id', linked.instagram_page_id,
    'instagram_username', linked.instagram_username,
    'page_name', linked.page_name,
    'instagram_business_account_id', linked.instagram_business_account_id,
    'facebook_user_id', linked.facebook_user_id,
    'granted_scopes', linked.granted_scopes,
    'connected_at', linked.connected_at,
    'previous_page_id', previous_page_id
  );
end;
$$;

-- Whether anyone holds the Page: a Page subscribed for a link that then failed is unsubscribed again
-- only when nobody does.
create function public.page_is_linked(p_page_id text)
returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select exists (select 1 from public.doctor_instagram where instagram_page_id = p_page_id);
$$;

-- ---------------------------------------------------------------------------------------------------
-- Disconnect: what the function needs for Meta, then the delete with Meta's outcome in the audit.

-- The doctor's link as the function needs it to clean up at Meta: the Page and its (encrypted) token,
-- the Facebook user, and whether another doctor still needs that user's grant, through a link or a
-- connection waiting to be finished (then it must not be revoked: one practice manager may link
-- Pages for several doctors).
create function public.prepare_disconnect(p_doctor_id uuid)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  link public.doctor_instagram;
begin
  select * into link from public.doctor_instagram where doctor_id = p_doctor_id;
  if not found then
    raise exception using errcode = 'PT404', message = 'No Instagram account is connected', detail = 'not_connected';
  end if;
  return jsonb_build_object(
    'page_id', link.instagram_page_id,
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

-- Deletes the doctor's link, whatever Page it holds by now, audited with what Meta said, and returns
-- what was deleted (the Page and its encrypted token), or null when there was nothing left.
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
    jsonb_build_object('page_id', deleted.instagram_page_id, 'access_token', deleted.instagram_access_token)
  end;
end;
$$;

-- ---------------------------------------------------------------------------------------------------
-- Meta's callbacks.

-- Everything of one Facebook user that existed when Meta issued the request (p_issued_at): their links,
-- their pending connections, and the open states the doctors concerned had started by then (a state
-- holds no Facebook data, but a flow that would bring that user's data back should not survive the
-- request). Anything newer is a new grant and stays, so a replayed or late request is harmless. Each
-- removal is audited with actor 'meta' and p_action.
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

create table private.data_deletion_requests (
  confirmation_code text primary key
    constraint data_deletion_requests_code_format check (confirmation_code ~ '^[A-Za-z0-9_-]{16,64}$'),
  -- A keyed hash of the signed_request's signature (never the request or the user id): the same request
  -- delivered twice is one request.
  request_key text not null unique
    constraint data_deletion_requests_request_key_format check (request_key ~ '^[0-9a-f]{64}$'),
  status text not null default 'received'
    constraint data_deletion_requests_status check (status in ('received', 'completed')),
  requested_at timestamptz not null default now(),
  completed_at timestamptz
);
comment on table private.data_deletion_requests is
  'Meta Data Deletion Requests: a confirmation code and status only, no personal data.';
revoke all on private.data_deletion_requests from public, anon, authenticated, service_role;

-- Records a data deletion request and carries it out in the same transaction; a replay (same
-- request_key) changes nothing and answers the request recorded the first time.
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
  update private.data_deletion_requests set status = 'completed', completed_at = now()
  where confirmation_code = request.confirmation_code
  returning * into request;
  return jsonb_build_object('confirmation_code', request.confirmation_code, 'status', request.status, 'replay', false);
end;
$$;

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
    'completed_at', request.completed_at
  );
end;
$$;

revoke all on function public.page_is_linked(text) from public, anon, authenticated;
revoke all on function public.prepare_disconnect(uuid) from public, anon, authenticated;
revoke all on function public.disconnect_doctor_instagram(uuid, jsonb, text) from public, anon, authenticated;
revoke all on function public.forget_facebook_user(text, text, timestamptz, text) from public, anon, authenticated;
revoke all on function public.request_data_deletion(text, text, text, timestamptz, text) from public, anon, authenticated;
revoke all on function public.data_deletion_status(text) from public, anon, authenticated;
grant execute on function public.page_is_linked(text) to service_role;
grant execute on function public.prepare_disconnect(uuid) to service_role;
grant execute on function public.disconnect_doctor_instagram(uuid, jsonb, text) to service_role;
grant execute on function public.forget_facebook_user(text, text, timestamptz, text) to service_role;
grant execute on function public.request_data_deletion(text, text, text, timestamptz, text) to service_role;
grant execute on function public.data_deletion_status(text) to service_role;

-- The link is finished by the doctor's own session.
--
-- Why: the signed state proves which doctor *started* a flow, not who pressed Allow at Meta. A connect
-- URL forwarded to someone else used to link *their* Page to the sender (account-linking CSRF, RFC 9700
-- 4.7). Now the callback only stores a short-lived pending connection, and nothing is linked until the
-- doctor who started the flow confirms it from their own signed-in session (open/link below).
--
-- Also here:
-- * one attempt per state: the callback claims the state before any Meta call, so a replay, a parallel
--   duplicate or a retry after a failure never reaches Meta (claim_oauth_state replaces check_oauth_state);
-- * at most 10 open states and 10 open pending connections per doctor (429 beyond that, and a claim is
--   refused before Meta when the pending connections are already full);
-- * no Page token outlives its purpose: a used pending connection is emptied, linking removes the
--   doctor's other pending connections, and each connect and callback empties expired ones (sweep);
-- * names from Meta are cut to what the columns allow and lose control and bidi characters;
-- * one audit writer for the trigger and the refusal entry.

-- ---------------------------------------------------------------------------------------------------
-- Audit: one writer, a new action.

alter table private.audit_log drop constraint audit_log_action;
alter table private.audit_log add constraint audit_log_action check (action in (
  'instagram.connected', 'instagram.updated', 'instagram.disconnected', 'instagram.link_refused'
));

-- Actor and correlation id come from the transaction: app.actor_id / app.correlation_id when a
-- SECURITY DEFINER function set them, else the request's JWT claims, else the database user.
create function private.append_audit(p_action text, p_resource_id text, p_metadata jsonb)
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
    coalesce(claims ->> 'role', session_user),
    p_action,
    'doctor_instagram',
    p_resource_id,
    nullif(current_setting('app.correlation_id', true), ''),
    p_metadata
  );
end;
$$;
revoke all on function private.append_audit(text, text, jsonb) from public;

create or replace function private.audit_doctor_instagram()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
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
    from jsonb_each(to_jsonb(new) - 'instagram_access_token' - 'updated_at') as after
    join jsonb_each(to_jsonb(old) - 'instagram_access_token' - 'updated_at') as before using (key)
    where after.value is distinct from before.value;
    perform private.append_audit('instagram.updated', new.doctor_id::text, entry_metadata);
  else
    perform private.append_audit('instagram.disconnected', old.doctor_id::text, jsonb_strip_nulls(jsonb_build_object(
      'page_id', old.instagram_page_id,
      'instagram_username', old.instagram_username
    )));
  end if;
  return null;
end;
$$;

-- ---------------------------------------------------------------------------------------------------
-- OAuth states: a per-doctor limit, and a claim in place of the old check.

-- Serves the foreign key (Supabase's advisors require it) and the per-doctor count below.
create index oauth_states_doctor_id_idx on private.oauth_states (doctor_id, expires_at);

-- State messages for the log (doctors see the catalogue's sentences in _shared/errors.ts).
create or replace function private.use_oauth_state(p_nonce_hash text, p_doctor_id uuid, p_consume boolean)
returns void
language plpgsql
set search_path = ''
as $$
declare
  state private.oauth_states;
begin
  select * into state from private.oauth_states where nonce_hash = p_nonce_hash for update;
  if not found then
    raise exception using errcode = 'PT400', message = 'Unknown OAuth state', detail = 'state_unknown';
  elsif state.doctor_id <> p_doctor_id then
    raise exception using errcode = 'PT400', message = 'OAuth state of another doctor', detail = 'state_doctor_mismatch';
  elsif state.consumed_at is not null then
    raise exception using errcode = 'PT400', message = 'OAuth state already used', detail = 'state_used';
  elsif state.expires_at <= now() then
    raise exception using errcode = 'PT400', message = 'OAuth state expired', detail = 'state_expired';
  end if;

  if p_consume then
    update private.oauth_states set consumed_at = now() where nonce_hash = p_nonce_hash;
  end if;
end;
$$;

-- Housekeeping on every connect and callback, bounded so no request pays for a backlog: expired pending
-- connections lose their Page tokens at once; long-expired states and pending connections are deleted.
-- On a quiet deployment, schedule it too (pg_cron: select private.sweep_expired()).
create function private.sweep_expired()
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  update private.pending_connections set pages = '[]'::jsonb
  where token_hash in (
    select token_hash from private.pending_connections
    where expires_at <= now() and pages <> '[]'::jsonb
    order by expires_at
    limit 50
    for update skip locked
  );
  delete from private.pending_connections
  where token_hash in (
    select token_hash from private.pending_connections
    where expires_at < now() - interval '1 hour'
    order by expires_at
    limit 50
    for update skip locked
  );
  delete from private.oauth_states
  where nonce_hash in (
    select nonce_hash from private.oauth_states
    where expires_at < now() - interval '1 hour'
    order by expires_at
    limit 50
    for update skip locked
  );
end;
$$;
revoke all on function private.sweep_expired() from public;

-- Raises PT429 too_many_requests (HINT: seconds until the oldest expires) when the doctor already has
-- 10 open pending connections.
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

-- The same contract as before, plus: refused with PT429 when the doctor already has 10 open states.
-- The per-doctor advisory lock makes count-then-insert atomic, so parallel connects cannot exceed it.
create or replace function public.create_oauth_state(p_doctor_id uuid, p_nonce_hash text, p_expires_at timestamptz)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  open_states int;
  retry_after_seconds int;
begin
  perform pg_advisory_xact_lock(hashtextextended('private.oauth_states:' || p_doctor_id::text, 0));
  select count(*), ceil(extract(epoch from min(expires_at) - now()))
  into open_states, retry_after_seconds
  from private.oauth_states
  where doctor_id = p_doctor_id and consumed_at is null and expires_at > now();
  if open_states >= 10 then
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

-- One attempt per state: marks it used, or raises why it cannot be (unknown, another doctor's, used,
-- expired). The row lock makes parallel duplicates wait and then see it used. Called before any Meta
-- call, so whatever happens after (Meta error, timeout, cancel), the state can never be used again. A
-- doctor whose pending connections are full is refused here too, before Meta (the state stays usable).
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

-- Replaced by the claim (checking without claiming let a state be tried again after any failure) and
-- by the pending connection (the callback no longer links).
drop function public.check_oauth_state(uuid, text);
drop function public.link_doctor_instagram(uuid, text, text, text, text, text, text, text);

-- ---------------------------------------------------------------------------------------------------
-- Pending connections: what the callback learned from Meta, waiting for the doctor's confirmation.

create table private.pending_connections (
  -- SHA-256 of the random token handed to the doctor's browser; the token itself is never stored.
  token_hash text primary key
    constraint pending_connections_token_hash_format check (token_hash ~ '^[0-9a-f]{64}$'),
  doctor_id uuid not null references auth.users (id) on delete cascade,
  -- [{ page_id, page_name, instagram_account_id, instagram_username, access_token }], each access_token
  -- encrypted by the function and bound to this doctor and that Page (as in doctor_instagram).
  -- Emptied when the connection is used, so no Page token outlives its purpose.
  pages jsonb not null
    constraint pending_connections_pages_array check (jsonb_typeof(pages) = 'array'),
  created_at timestamptz not null default now(),
  expires_at timestamptz not null,
  used_at timestamptz,
  constraint pending_connections_lifetime check (expires_at > created_at and expires_at <= created_at + interval '1 hour')
);

create index pending_connections_doctor_id_idx on private.pending_connections (doctor_id, expires_at);
create index pending_connections_expires_at_idx on private.pending_connections (expires_at);

comment on table private.pending_connections is
  'Pages offered by Meta, waiting for the doctor who started the flow to confirm one from their own session.';

revoke all on private.pending_connections from public, anon, authenticated, service_role;

-- A name from Meta as doctor_instagram can hold it: without control or bidi-override characters (they
-- could make a message read differently from what it says), cut to the column's length, empty = none.
create function private.clip(p_value text, p_length int)
returns text
language sql
immutable
set search_path = ''
as $$
  select left(nullif(regexp_replace(p_value, '[[:cntrl:]\u200e\u200f\u202a-\u202e\u2066-\u2069]', '', 'g'), ''), p_length);
$$;
revoke all on function private.clip(text, int) from public;

-- Stores a pending connection for ten minutes and returns its expiry. Pages are validated and names
-- cut to length here, so what finish later copies into doctor_instagram always fits.
create function public.create_pending_connection(p_token_hash text, p_doctor_id uuid, p_pages jsonb)
returns timestamptz
language plpgsql
security definer
set search_path = ''
as $$
declare
  pages jsonb;
  created private.pending_connections;
begin
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

  insert into private.pending_connections (token_hash, doctor_id, pages, expires_at)
  values (p_token_hash, p_doctor_id, pages, now() + interval '10 minutes')
  returning * into created;
  return created.expires_at;
end;
$$;

-- The pending connection behind a token, locked until commit, or why it cannot be used.
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

-- The Page a finish asked for (or the only one), or page_not_found.
create function private.pending_page(p_pending private.pending_connections, p_page_id text)
returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
  page jsonb;
begin
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

create function private.raise_page_already_linked(p_page jsonb)
returns void
language plpgsql
set search_path = ''
as $$
begin
  raise exception using
    errcode = 'PT409',
    message = format('The Facebook Page %s is already linked to another doctor. They must disconnect it first, or choose another Page.',
                     case when p_page ? 'page_name' then format('"%s" (%s)', p_page ->> 'page_name', p_page ->> 'page_id')
                          else p_page ->> 'page_id' end),
    detail = 'page_already_linked';
end;
$$;
revoke all on function private.raise_page_already_linked(jsonb) from public;

-- Step 1 of finish, before the function does anything at Meta with the Page. Answers one of:
--   { outcome: 'session_mismatch' }  the signed-in doctor did not start this flow: the pending connection
--                                    is destroyed and the refusal audited (this commits; it is not an error)
--   { outcome: 'choose', pages, expires_at }  several Pages and none chosen (no tokens in the answer)
--   { outcome: 'ready', page }       the Page to link, with its encrypted token
-- or raises pending_unknown / pending_used / pending_expired / page_not_found / page_already_linked.
create function public.open_pending_connection(
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
  return jsonb_build_object('outcome', 'ready', 'page', page);
end;
$$;

-- Step 2 of finish, one transaction: consume the pending connection, refuse a Page another doctor
-- holds, upsert the doctor's row (the audit trigger records it under this request's correlation id).
-- Everything is checked again under the row lock, so of two finishes racing, one links and the other
-- gets pending_used; any failure leaves the pending connection as it was.
create function public.link_pending_connection(
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
  -- The doctor's other open pending connections are moot now; their Page tokens go.
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
      page_name, instagram_business_account_id
    )
    values (
      p_doctor_id, page ->> 'page_id', page ->> 'access_token', page ->> 'instagram_username',
      page ->> 'page_name', page ->> 'instagram_account_id'
    )
    on conflict (doctor_id) do update set
      instagram_page_id = excluded.instagram_page_id,
      instagram_access_token = excluded.instagram_access_token,
      instagram_username = excluded.instagram_username,
      page_name = excluded.page_name,
      instagram_business_account_id = excluded.instagram_business_account_id,
      connected_at = case
        when current_link.instagram_page_id = excluded.instagram_page_id then current_link.connected_at
        else now()
      end
    returning * into linked;
  exception when unique_violation then
    -- Another doctor linked this Page between our check and our insert: the same answer as the check.
    perform private.raise_page_already_linked(page);
  end;

  return jsonb_build_object(
    'doctor_id', linked.doctor_id,
    'instagram_page_id', linked.instagram_page_id,
    'instagram_username', linked.instagram_username,
    'page_name', linked.page_name,
    'instagram_business_account_id', linked.instagram_business_account_id,
    'connected_at', linked.connected_at,
    'previous_page_id', previous_page_id
  );
end;
$$;

revoke all on function public.create_pending_connection(text, uuid, jsonb) from public, anon, authenticated;
revoke all on function public.open_pending_connection(uuid, text, text, text) from public, anon, authenticated;
revoke all on function public.link_pending_connection(uuid, text, text, text) from public, anon, authenticated;
grant execute on function public.create_pending_connection(text, uuid, jsonb) to service_role;
grant execute on function public.open_pending_connection(uuid, text, text, text) to service_role;
grant execute on function public.link_pending_connection(uuid, text, text, text) to service_role;

-- Append-only audit trail of every change to doctor_instagram, written by triggers so that no code
-- path (function, dashboard delete, cascade from auth.users) can change a link without a record.

create table private.audit_log (
  id bigint generated always as identity primary key,
  occurred_at timestamptz not null default now(),
  -- The doctor on whose behalf the change was made (null for changes made outside any request).
  actor_id uuid,
  -- The API role from the request's JWT, or the database user for direct SQL (e.g. supabase_auth_admin).
  actor_role text not null,
  action text not null
    constraint audit_log_action check (action in ('instagram.connected', 'instagram.updated', 'instagram.disconnected')),
  resource_type text not null,
  resource_id text not null,
  correlation_id text
    constraint audit_log_correlation_id_length check (char_length(correlation_id) <= 128),
  -- Non-secret facts only: the token is never copied here, a change of it is recorded as token_rotated.
  metadata jsonb not null default '{}'::jsonb
);

create index audit_log_resource_idx on private.audit_log (resource_type, resource_id, occurred_at desc);
create index audit_log_correlation_idx on private.audit_log (correlation_id) where correlation_id is not null;

comment on table private.audit_log is
  'Append-only: no API role has any privilege on it; only its owner may delete rows (retention).';

revoke all on private.audit_log from public, anon, authenticated, service_role;

create function private.audit_doctor_instagram()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  claims jsonb := nullif(current_setting('request.jwt.claims', true), '')::jsonb;
  row_doctor_id uuid;
  entry_action text;
  entry_metadata jsonb;
begin
  if tg_op = 'INSERT' then
    row_doctor_id := new.doctor_id;
    entry_action := 'instagram.connected';
    entry_metadata := jsonb_strip_nulls(jsonb_build_object(
      'page_id', new.instagram_page_id,
      'page_name', new.page_name,
      'instagram_username', new.instagram_username,
      'instagram_business_account_id', new.instagram_business_account_id
    ));
  elsif tg_op = 'UPDATE' then
    row_doctor_id := new.doctor_id;
    entry_action := 'instagram.updated';
    select jsonb_build_object(
      'changed', coalesce(jsonb_object_agg(after.key, jsonb_build_object('from', before.value, 'to', after.value)), '{}'::jsonb),
      'token_rotated', new.instagram_access_token is distinct from old.instagram_access_token
    )
    into entry_metadata
    from jsonb_each(to_jsonb(new) - 'instagram_access_token' - 'updated_at') as after
    join jsonb_each(to_jsonb(old) - 'instagram_access_token' - 'updated_at') as before using (key)
    where after.value is distinct from before.value;
  else
    row_doctor_id := old.doctor_id;
    entry_action := 'instagram.disconnected';
    entry_metadata := jsonb_strip_nulls(jsonb_build_object(
      'page_id', old.instagram_page_id,
      'instagram_username', old.instagram_username
    ));
  end if;

  insert into private.audit_log (actor_id, actor_role, action, resource_type, resource_id, correlation_id, metadata)
  values (
    coalesce(nullif(current_setting('app.actor_id', true), '')::uuid, (claims ->> 'sub')::uuid),
    coalesce(claims ->> 'role', session_user),
    entry_action,
    'doctor_instagram',
    row_doctor_id::text,
    nullif(current_setting('app.correlation_id', true), ''),
    entry_metadata
  );
  return null;
end;
$$;
revoke all on function private.audit_doctor_instagram() from public;

create trigger doctor_instagram_audit
  after insert or update or delete on public.doctor_instagram
  for each row execute function private.audit_doctor_instagram();

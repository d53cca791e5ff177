-- private.audit_log: the append-only trail of every change to a doctor's link.
--
-- What writes it, always through private.append_audit(), the single writer:
-- * the trigger doctor_instagram_audit, on every insert, update and delete of public.doctor_instagram,
--   whoever makes it (the link and disconnect functions, Meta's callbacks, a direct delete by
--   service_role, SQL from the dashboard, the cascade from auth.users), so no change to a link goes
--   unrecorded (a TRUNCATE fires no row trigger, but only the table's owner may run one);
-- * open_pending_connection(), when a finish is refused because another doctor's session presented
--   the pending connection (instagram.link_refused);
-- * forget_facebook_user() and forget_instagram_user(), one entry per doctor whose pending connections
--   Meta's request removed.
--
-- Who acted comes from the transaction: the SECURITY DEFINER function that acts sets app.actor_id,
-- app.actor_role ('meta' for Meta's callbacks) and app.correlation_id with set_config(..., true), which
-- last until the transaction ends; without them, the request's JWT claims; without those, the database
-- user (session_user, e.g. supabase_auth_admin for the cascade).
--
-- Rules:
-- * No API role has any privilege on the table, service_role included: through the API it can be
--   neither read nor changed. Only its owner may delete rows (retention).
-- * The trigger function and append_audit() are SECURITY DEFINER because the change being recorded may
--   be made by a role with no right on this table (supabase_auth_admin's cascade, service_role's direct
--   delete): the entry is written with the owner's rights. EXECUTE is revoked from PUBLIC; their only
--   callers are the trigger and the owner's own SECURITY DEFINER functions.
-- * metadata holds non-secret facts only: never the access token (a change of it is recorded as
--   token_rotated), the Facebook or Instagram user id or the granted scopes, so a data deletion request
--   leaves no trace of that user here.

create table private.audit_log (
  id bigint generated always as identity primary key,
  occurred_at timestamptz not null default now(),
  -- The doctor on whose behalf the change was made; null when no doctor acted (Meta's callbacks,
  -- service_role's or the dashboard's direct SQL, the cascade from auth.users).
  actor_id uuid,
  -- app.actor_role when a function set it ('meta'), else the role in the request's JWT (service_role for
  -- every call the edge functions make), else the database user for direct SQL (e.g. supabase_auth_admin).
  actor_role text not null,
  -- connected / updated / disconnected: the trigger's insert, update and delete; status_changed: a link
  -- flagged needs_reconnect or found active again; reconnected: the same account linked again the same
  -- way by its doctor (a fresh token, status active); token_reencrypted: the token moved to the primary
  -- encryption key; token_refreshed: Meta exchanged an Instagram user token for a new one (a refresh,
  -- not a new grant);
  -- link_refused: a finish from another doctor's session; deauthorized / deleted_by_meta: removals for
  -- Meta's callbacks.
  action text not null
    constraint audit_log_action check (action in (
      'instagram.connected', 'instagram.updated', 'instagram.disconnected', 'instagram.link_refused',
      'instagram.deauthorized', 'instagram.deleted_by_meta', 'instagram.status_changed',
      'instagram.reconnected', 'instagram.token_reencrypted', 'instagram.token_refreshed'
    )),
  -- Always 'doctor_instagram'; resource_id is the doctor's id (the doctor whose link or pending
  -- connection it concerns).
  resource_type text not null,
  resource_id text not null,
  -- The edge function's own id for the request (a caller's x-correlation-id is only logged).
  correlation_id text
    constraint audit_log_correlation_id_length check (char_length(correlation_id) <= 128),
  -- Non-secret facts only (see the header); a disconnect adds what Meta answered under "meta".
  metadata jsonb not null default '{}'::jsonb
);

-- A link's history, newest first; and everything one request did.
create index audit_log_resource_idx on private.audit_log (resource_type, resource_id, occurred_at desc);
create index audit_log_correlation_idx on private.audit_log (correlation_id) where correlation_id is not null;

comment on table private.audit_log is
  'Append-only: no API role has any privilege on it; only its owner may delete rows (retention).';

revoke all on private.audit_log from public, anon, authenticated, service_role;

-- Appends one entry for a doctor (p_resource_id), with the actor and correlation id taken from the
-- transaction as the header describes.
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
    coalesce(nullif(current_setting('app.actor_role', true), ''), claims ->> 'role', session_user),
    p_action,
    'doctor_instagram',
    p_resource_id,
    nullif(current_setting('app.correlation_id', true), ''),
    p_metadata
  );
end;
$$;
revoke all on function private.append_audit(text, text, jsonb) from public;

-- The trigger's entry: insert -> instagram.connected with the Page (or, for an Instagram Login link,
-- its token_kind) and names; update -> instagram.updated (instagram.status_changed when the status
-- changed) with each changed column (from, to) and token_rotated; delete -> instagram.disconnected with
-- the Page (or the token_kind) and username. The function that writes may set the action
-- (app.audit_action: forget_facebook_user() and forget_instagram_user() use their Meta action,
-- link_pending_connection() instagram.reconnected, re-encryption instagram.token_reencrypted, a refresh
-- instagram.token_refreshed) and extra metadata (app.audit_metadata: disconnect_doctor_instagram() adds
-- Meta's outcome). The token, updated_at, facebook_user_id, instagram_user_id and granted_scopes are
-- never copied. The health bookkeeping (checked_at, reconnect_by, token_expires_at, token_refreshed_at,
-- the lease) is not audited on its own: an update that changes nothing else writes no entry, so a check
-- every few hours does not flood the trail.
create function private.audit_doctor_instagram()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  hidden text[] := array['instagram_access_token', 'updated_at', 'facebook_user_id', 'instagram_user_id', 'granted_scopes'];
  bookkeeping text[] := array['checked_at', 'reconnect_by', 'token_expires_at', 'token_refreshed_at', 'lease_id', 'lease_until',
    'disconnecting_until'];
  entry_metadata jsonb;
  token_rotated boolean;
begin
  if tg_op = 'INSERT' then
    perform private.append_audit('instagram.connected', new.doctor_id::text, jsonb_strip_nulls(jsonb_build_object(
      'page_id', new.instagram_page_id,
      'token_kind', case when new.token_kind <> 'page' then new.token_kind end,
      'page_name', new.page_name,
      'instagram_username', new.instagram_username,
      'instagram_business_account_id', new.instagram_business_account_id
    )));
  elsif tg_op = 'UPDATE' then
    token_rotated := new.instagram_access_token is distinct from old.instagram_access_token;
    select coalesce(jsonb_object_agg(after.key, jsonb_build_object('from', before.value, 'to', after.value)), '{}'::jsonb)
    into entry_metadata
    from jsonb_each(to_jsonb(new) - hidden - bookkeeping) as after
    join jsonb_each(to_jsonb(old) - hidden - bookkeeping) as before using (key)
    where after.value is distinct from before.value;
    if entry_metadata = '{}'::jsonb and not token_rotated then
      return null;
    end if;
    perform private.append_audit(
      coalesce(
        nullif(current_setting('app.audit_action', true), ''),
        case when new.status is distinct from old.status then 'instagram.status_changed' else 'instagram.updated' end
      ),
      new.doctor_id::text,
      jsonb_build_object('changed', entry_metadata, 'token_rotated', token_rotated)
        || jsonb_strip_nulls(jsonb_build_object(
          'reconnect_by', case when new.status is distinct from old.status then new.reconnect_by end
        ))
        || coalesce(nullif(current_setting('app.audit_metadata', true), '')::jsonb, '{}'::jsonb)
    );
  else
    perform private.append_audit(
      coalesce(nullif(current_setting('app.audit_action', true), ''), 'instagram.disconnected'),
      old.doctor_id::text,
      jsonb_strip_nulls(jsonb_build_object(
        'page_id', old.instagram_page_id,
        'token_kind', case when old.token_kind <> 'page' then old.token_kind end,
        'instagram_username', old.instagram_username
      )) || coalesce(nullif(current_setting('app.audit_metadata', true), '')::jsonb, '{}'::jsonb)
    );
  end if;
  return null;
end;
$$;
revoke all on function private.audit_doctor_instagram() from public;

create trigger doctor_instagram_audit
  after insert or update or delete on public.doctor_instagram
  for each row execute function private.audit_doctor_instagram();

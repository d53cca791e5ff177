-- One-time OAuth state. The edge function signs the state (HMAC) and records the SHA-256 of its
-- random nonce here; the callback may use it once, for the doctor who started the flow, before expiry.

create table private.oauth_states (
  nonce_hash text primary key
    constraint oauth_states_nonce_hash_format check (nonce_hash ~ '^[0-9a-f]{64}$'),
  doctor_id uuid not null references auth.users (id) on delete cascade,
  created_at timestamptz not null default now(),
  expires_at timestamptz not null,
  consumed_at timestamptz,
  constraint oauth_states_lifetime check (expires_at > created_at and expires_at <= created_at + interval '1 hour')
);

create index oauth_states_expires_at_idx on private.oauth_states (expires_at);

revoke all on private.oauth_states from public, anon, authenticated, service_role;

-- Records a state for a doctor. Each call also deletes a bounded batch of long-expired states,
-- so the table stays small without a scheduled job and no call pays for a large backlog.
create function public.create_oauth_state(p_doctor_id uuid, p_nonce_hash text, p_expires_at timestamptz)
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  delete from private.oauth_states
  where nonce_hash in (
    select nonce_hash from private.oauth_states
    where expires_at < now() - interval '1 hour'
    order by expires_at
    limit 50
    for update skip locked
  );

  insert into private.oauth_states (nonce_hash, doctor_id, expires_at)
  values (p_nonce_hash, p_doctor_id, p_expires_at);
end;
$$;

-- Raises a distinct, API-mappable error (SQLSTATE PT400, the reason in DETAIL) unless the state can be
-- used by this doctor now; with p_consume it also marks it used. Callers hold the row lock until commit.
create function private.use_oauth_state(p_nonce_hash text, p_doctor_id uuid, p_consume boolean)
returns void
language plpgsql
set search_path = ''
as $$
declare
  state private.oauth_states;
begin
  select * into state from private.oauth_states where nonce_hash = p_nonce_hash for update;
  if not found then
    raise exception using errcode = 'PT400', message = 'The sign-in link is not known; start again', detail = 'state_unknown';
  elsif state.doctor_id <> p_doctor_id then
    raise exception using errcode = 'PT400', message = 'The sign-in link belongs to another doctor', detail = 'state_doctor_mismatch';
  elsif state.consumed_at is not null then
    raise exception using errcode = 'PT400', message = 'The sign-in link was already used; start again', detail = 'state_used';
  elsif state.expires_at <= now() then
    raise exception using errcode = 'PT400', message = 'The sign-in link expired; start again', detail = 'state_expired';
  end if;

  if p_consume then
    update private.oauth_states set consumed_at = now() where nonce_hash = p_nonce_hash;
  end if;
end;
$$;
revoke all on function private.use_oauth_state(text, uuid, boolean) from public;

-- Lets the callback refuse a replayed, expired or foreign state before it spends a call to Meta.
-- The state is only consumed by link_doctor_instagram(), in the same transaction as the link.
create function public.check_oauth_state(p_doctor_id uuid, p_nonce_hash text)
returns void
language sql
security definer
set search_path = ''
as $$
  select private.use_oauth_state(p_nonce_hash, p_doctor_id, false);
$$;

revoke all on function public.create_oauth_state(uuid, text, timestamptz) from public, anon, authenticated;
revoke all on function public.check_oauth_state(uuid, text) from public, anon, authenticated;
grant execute on function public.create_oauth_state(uuid, text, timestamptz) to service_role;
grant execute on function public.check_oauth_state(uuid, text) to service_role;

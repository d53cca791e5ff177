-- private.oauth_states: the server-side half of the OAuth `state`, which makes each state one-time.
--
-- instagram-connect signs the state itself (HMAC-SHA256, supabase/functions/_shared/oauth/state.ts),
-- binding the flow to one doctor, a random nonce and an expiry: the signature proves the state is
-- ours, this table makes it usable once. Only the SHA-256 of the nonce is stored (the CHECK demands
-- 64 lower-case hex digits), so the database never holds a usable state.
--
-- Life of a row: create_oauth_state() records it when a doctor starts a link (at most 10 states per
-- doctor within their lifetime, used, cancelled or not); claim_oauth_state() marks it used when Meta's redirect reaches the callback, before any
-- call to Meta, so a replay, a parallel duplicate or a retry after a failure never reaches Meta (both in
-- 06_start_and_callback.sql, because they also sweep and check pending connections);
-- private.sweep_expired() (05_sweep_expired.sql) deletes it an hour after it expired;
-- forget_facebook_user() deletes the open states of the doctors a Meta request concerns. It goes with
-- the doctor's auth.users row (on delete cascade).
--
-- A state lives at most an hour (CHECK oauth_states_lifetime; the function's
-- INSTAGRAM_STATE_TTL_SECONDS is 60 to 3600, 600 by default). No API role has any privilege on the
-- table: only the SECURITY DEFINER functions reach it.

create table private.oauth_states (
  nonce_hash text primary key
    constraint oauth_states_nonce_hash_format check (nonce_hash ~ '^[0-9a-f]{64}$'),
  doctor_id uuid not null references auth.users (id) on delete cascade,
  created_at timestamptz not null default now(),
  expires_at timestamptz not null,
  consumed_at timestamptz,
  constraint oauth_states_lifetime check (expires_at > created_at and expires_at <= created_at + interval '1 hour')
);

-- For the sweep.
create index oauth_states_expires_at_idx on private.oauth_states (expires_at);
-- Serves the foreign key (Supabase's advisors require it), the per-doctor count in
-- create_oauth_state() and forget_facebook_user()'s delete by doctor.
create index oauth_states_doctor_id_idx on private.oauth_states (doctor_id, expires_at);

revoke all on private.oauth_states from public, anon, authenticated, service_role;

-- Raises SQLSTATE PT400 (PostgREST answers HTTP 400) with the reason in DETAIL (state_unknown,
-- state_doctor_mismatch, state_used, state_expired: codes of the catalogue in
-- supabase/functions/_shared/errors.ts, which holds the sentences doctors see; the MESSAGE is for the
-- log) unless the state can be used by this doctor now; with p_consume it also marks it used. The row
-- stays locked until the caller's transaction ends. Its only caller, claim_oauth_state(), passes true.
-- Not SECURITY DEFINER: it runs inside SECURITY DEFINER functions, with their owner's rights; EXECUTE
-- is revoked from PUBLIC.
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
revoke all on function private.use_oauth_state(text, uuid, boolean) from public;

-- The one-time OAuth state: who may record and claim it, each way a claim is refused, one attempt
-- per state, and at most 10 states per doctor within their lifetime.
begin;
-- pgTAP is already in the extensions schema where the suite runs; the NOTICE saying so is noise.
set local client_min_messages to warning;
create extension if not exists pgtap;
select plan(26);

insert into auth.users (id) values
  ('00000000-0000-4000-8000-00000000c001'),
  ('00000000-0000-4000-8000-00000000c002'),
  ('00000000-0000-4000-8000-00000000c003');

select ok(not has_schema_privilege('anon', 'private', 'usage'), 'anon cannot reach the private schema');
select ok(not has_schema_privilege('authenticated', 'private', 'usage'), 'authenticated cannot reach the private schema');
select ok(
  not has_function_privilege('anon', 'public.create_oauth_state(uuid, text, timestamptz)', 'execute')
  and not has_function_privilege('authenticated', 'public.create_oauth_state(uuid, text, timestamptz)', 'execute')
  and has_function_privilege('service_role', 'public.create_oauth_state(uuid, text, timestamptz)', 'execute'),
  'only service_role may record a state'
);
select ok(
  not has_function_privilege('anon', 'public.claim_oauth_state(uuid, text)', 'execute')
  and not has_function_privilege('authenticated', 'public.claim_oauth_state(uuid, text)', 'execute')
  and has_function_privilege('service_role', 'public.claim_oauth_state(uuid, text)', 'execute'),
  'only service_role may claim a state'
);
select hasnt_function('public', 'check_oauth_state', 'the check that did not claim is gone');
select is(
  (select proconfig from pg_proc where oid = 'public.claim_oauth_state(uuid, text)'::regprocedure),
  array['search_path=""'], 'claim_oauth_state pins an empty search_path'
);

set local role service_role;
select lives_ok(
  $$select public.create_oauth_state('00000000-0000-4000-8000-00000000c001', repeat('a', 64), now() + interval '10 minutes')$$,
  'service_role records a state'
);
select lives_ok(
  $$select public.claim_oauth_state('00000000-0000-4000-8000-00000000c001', repeat('a', 64))$$,
  'a fresh state can be claimed'
);
select throws_ok(
  $$select public.claim_oauth_state('00000000-0000-4000-8000-00000000c001', repeat('a', 64))$$,
  'PT400', 'OAuth state already used', 'a second claim of the same state is refused'
);
select throws_ok(
  $$select public.claim_oauth_state('00000000-0000-4000-8000-00000000c001', repeat('b', 64))$$,
  'PT400', 'Unknown OAuth state', 'an unknown state is refused'
);
select lives_ok(
  $$select public.create_oauth_state('00000000-0000-4000-8000-00000000c001', repeat('9', 64), now() + interval '10 minutes')$$,
  'another state for the same doctor'
);
select throws_ok(
  $$select public.claim_oauth_state('00000000-0000-4000-8000-00000000c002', repeat('9', 64))$$,
  'PT400', 'OAuth state of another doctor', 'a state of another doctor is refused'
);
select throws_ok(
  $$select public.create_oauth_state('00000000-0000-4000-8000-00000000c001', 'not-a-hash', now() + interval '10 minutes')$$,
  '23514', null, 'a malformed nonce hash is refused'
);
select throws_ok(
  $$select public.create_oauth_state('00000000-0000-4000-8000-00000000c001', repeat('c', 64), now() + interval '2 hours')$$,
  '23514', null, 'a state living longer than an hour is refused'
);
reset role;
select is(
  (select consumed_at from private.oauth_states where nonce_hash = repeat('9', 64)),
  null, 'a refused claim (another doctor) leaves the state as it was'
);

-- An expired state (created in the past through the table, as the clock would have done).
insert into private.oauth_states (nonce_hash, doctor_id, created_at, expires_at)
values (repeat('d', 64), '00000000-0000-4000-8000-00000000c001', now() - interval '20 minutes', now() - interval '10 minutes');
select throws_ok(
  $$select public.claim_oauth_state('00000000-0000-4000-8000-00000000c001', repeat('d', 64))$$,
  'PT400', 'OAuth state expired', 'an expired state is refused'
);

-- A doctor with 10 open pending connections cannot claim: refused before any Meta call, state kept.
insert into private.pending_connections (token_hash, doctor_id, pages, expires_at)
select lpad(to_hex(n), 64, 'a'), '00000000-0000-4000-8000-00000000c002', '[]', now() + interval '5 minutes'
from generate_series(1, 10) as n;
insert into private.oauth_states (nonce_hash, doctor_id, expires_at)
values (repeat('7', 64), '00000000-0000-4000-8000-00000000c002', now() + interval '10 minutes');
set local role service_role;
select throws_ok(
  $$select public.claim_oauth_state('00000000-0000-4000-8000-00000000c002', repeat('7', 64))$$,
  'PT429', 'Too many connections are waiting for confirmation; wait for one to expire',
  'a doctor whose pending connections are full cannot claim'
);
reset role;
select is(
  (select consumed_at from private.oauth_states where nonce_hash = repeat('7', 64)),
  null, 'and the state stays usable for later'
);

-- At most 10 states per doctor within their lifetime: a claimed (or cancelled) state counts until it
-- expires, so start-then-cancel rounds cannot pile up rows; an expired one no longer counts.
insert into private.oauth_states (nonce_hash, doctor_id, expires_at)
select lpad(to_hex(n), 64, '0'), '00000000-0000-4000-8000-00000000c003', now() + (n || ' minutes')::interval
from generate_series(1, 10) as n;
set local role service_role;
select throws_like(
  $$select public.create_oauth_state('00000000-0000-4000-8000-00000000c003', repeat('e', 64), now() + interval '10 minutes')$$,
  'Too many connection attempts%', 'an 11th open state is refused'
);
reset role;
select ok(
  (select count(*) = 10 from private.oauth_states where doctor_id = '00000000-0000-4000-8000-00000000c003'),
  'and was not recorded'
);
update private.oauth_states set consumed_at = now() where nonce_hash = lpad(to_hex(1), 64, '0');
set local role service_role;
select throws_like(
  $$select public.create_oauth_state('00000000-0000-4000-8000-00000000c003', repeat('e', 64), now() + interval '10 minutes')$$,
  'Too many connection attempts%', 'a claimed state still counts until it expires'
);
reset role;
update private.oauth_states set created_at = now() - interval '20 minutes', expires_at = now() - interval '1 second'
where nonce_hash = lpad(to_hex(1), 64, '0');
set local role service_role;
select lives_ok(
  $$select public.create_oauth_state('00000000-0000-4000-8000-00000000c003', repeat('e', 64), now() + interval '10 minutes')$$,
  'an expired state frees a place'
);
reset role;

-- The refusal's HINT carries the seconds until the oldest live state expires (Retry-After).
create function pg_temp.limit_error() returns table (code text, reason text, wait text) language plpgsql as $$
begin
  perform public.create_oauth_state('00000000-0000-4000-8000-00000000c003', repeat('f', 64), now() + interval '10 minutes');
exception when others then
  get stacked diagnostics code = returned_sqlstate, reason = pg_exception_detail, wait = pg_exception_hint;
  return next;
end;
$$;
select results_eq(
  $$select code, reason, wait from pg_temp.limit_error()$$,
  $$values ('PT429', 'too_many_requests', '120')$$,
  'the refusal is PT429 too_many_requests with the seconds to wait (the oldest live state expires in 2 minutes)'
);

-- Long-expired states are swept when a new one is recorded.
insert into private.oauth_states (nonce_hash, doctor_id, created_at, expires_at)
select lpad(to_hex(n), 64, 'b'), '00000000-0000-4000-8000-00000000c002', now() - interval '3 hours', now() - interval '2 hours 55 minutes'
from generate_series(1, 60) as n;
set local role service_role;
select lives_ok(
  $$select public.create_oauth_state('00000000-0000-4000-8000-00000000c002', repeat('1', 64), now() + interval '10 minutes')$$,
  'a new state is recorded'
);
reset role;
select is(
  (select count(*)::int from private.oauth_states where expires_at < now() - interval '1 hour'),
  10, 'each new state deletes at most 50 long-expired ones'
);

delete from auth.users where id = '00000000-0000-4000-8000-00000000c001';
select is_empty(
  $$select 1 from private.oauth_states where doctor_id = '00000000-0000-4000-8000-00000000c001'$$,
  'a deleted user''s states go with them'
);

select * from finish();
rollback;

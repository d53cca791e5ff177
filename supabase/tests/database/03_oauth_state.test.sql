-- The one-time OAuth state: who may record and check it, and each way a state is refused.
begin;
create extension if not exists pgtap;
select plan(14);

insert into auth.users (id) values
  ('00000000-0000-4000-8000-00000000c001'),
  ('00000000-0000-4000-8000-00000000c002');

select ok(not has_schema_privilege('anon', 'private', 'usage'), 'anon cannot reach the private schema');
select ok(not has_schema_privilege('authenticated', 'private', 'usage'), 'authenticated cannot reach the private schema');
select ok(
  not has_function_privilege('anon', 'public.create_oauth_state(uuid, text, timestamptz)', 'execute')
  and not has_function_privilege('authenticated', 'public.create_oauth_state(uuid, text, timestamptz)', 'execute')
  and has_function_privilege('service_role', 'public.create_oauth_state(uuid, text, timestamptz)', 'execute'),
  'only service_role may record a state'
);
select ok(
  not has_function_privilege('anon', 'public.check_oauth_state(uuid, text)', 'execute')
  and not has_function_privilege('authenticated', 'public.check_oauth_state(uuid, text)', 'execute')
  and has_function_privilege('service_role', 'public.check_oauth_state(uuid, text)', 'execute'),
  'only service_role may check a state'
);

set local role service_role;
select lives_ok(
  $$select public.create_oauth_state('00000000-0000-4000-8000-00000000c001', repeat('a', 64), now() + interval '10 minutes')$$,
  'service_role records a state'
);
select lives_ok(
  $$select public.check_oauth_state('00000000-0000-4000-8000-00000000c001', repeat('a', 64))$$,
  'a fresh state passes the check'
);
select lives_ok(
  $$select public.check_oauth_state('00000000-0000-4000-8000-00000000c001', repeat('a', 64))$$,
  'checking does not consume the state'
);
select throws_ok(
  $$select public.check_oauth_state('00000000-0000-4000-8000-00000000c001', repeat('b', 64))$$,
  'PT400', 'The sign-in link is not known; start again', 'an unknown state is refused'
);
select throws_ok(
  $$select public.check_oauth_state('00000000-0000-4000-8000-00000000c002', repeat('a', 64))$$,
  'PT400', 'The sign-in link belongs to another doctor', 'a state of another doctor is refused'
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

-- An expired state (created in the past through the table, as the clock would have done).
insert into private.oauth_states (nonce_hash, doctor_id, created_at, expires_at)
values (repeat('d', 64), '00000000-0000-4000-8000-00000000c001', now() - interval '20 minutes', now() - interval '10 minutes');
select throws_ok(
  $$select public.check_oauth_state('00000000-0000-4000-8000-00000000c001', repeat('d', 64))$$,
  'PT400', 'The sign-in link expired; start again', 'an expired state is refused'
);

-- Long-expired states are swept when a new one is recorded.
insert into private.oauth_states (nonce_hash, doctor_id, created_at, expires_at)
select lpad(to_hex(n), 64, 'e'), '00000000-0000-4000-8000-00000000c001', now() - interval '3 hours', now() - interval '2 hours 55 minutes'
from generate_series(1, 60) as n;
set local role service_role;
select public.create_oauth_state('00000000-0000-4000-8000-00000000c001', repeat('f', 64), now() + interval '10 minutes');
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

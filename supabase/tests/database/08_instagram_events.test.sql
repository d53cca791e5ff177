-- Webhook events: who may read and write them, the identity rules, and what the RPCs refuse.
begin;
set local client_min_messages to warning;
create extension if not exists pgtap;
select plan(18);

insert into auth.users (id) values
  ('00000000-0000-4000-8000-00000000e001'),
  ('00000000-0000-4000-8000-00000000e002');
insert into public.doctor_instagram (doctor_id, instagram_page_id, instagram_access_token, instagram_business_account_id, facebook_user_id) values
  ('00000000-0000-4000-8000-00000000e001', '9001', 'v1.a.b', '178419001', '5559001'),
  ('00000000-0000-4000-8000-00000000e002', '9002', 'v1.c.d', '178419002', '5559002');

-- Identity ---------------------------------------------------------------------------------------
select throws_ok(
  $$insert into public.doctor_instagram (doctor_id, instagram_page_id, instagram_access_token, instagram_business_account_id)
    values ('00000000-0000-4000-8000-00000000e002', '9003', 'v1.e.f', '178419001')
    on conflict (doctor_id) do update set instagram_business_account_id = excluded.instagram_business_account_id$$,
  '23505', null, 'one Instagram account belongs to one doctor'
);
select throws_ok(
  $$update public.doctor_instagram set instagram_business_account_id = null where doctor_id = '00000000-0000-4000-8000-00000000e001'$$,
  '23514', null, 'a link cannot lose its Instagram account'
);

-- Privileges -------------------------------------------------------------------------------------
select ok(
  (select bool_and(
     not has_function_privilege('anon', oid, 'execute')
     and not has_function_privilege('authenticated', oid, 'execute')
     and has_function_privilege('service_role', oid, 'execute')
     and prosecdef and proconfig @> array['search_path=""'])
   from pg_proc
   where oid in ('public.store_instagram_events(text, jsonb, text)'::regprocedure,
                 'public.claim_instagram_events(text, int, int)'::regprocedure,
                 'public.ack_instagram_events(text, bigint[])'::regprocedure,
                 'public.purge_instagram_events(int)'::regprocedure)),
  'only service_role may store, claim, acknowledge and purge events; each is SECURITY DEFINER with an empty search_path'
);
select ok(
  not has_table_privilege('anon', 'public.instagram_events', 'select, insert, update, delete')
  and not has_table_privilege('authenticated', 'public.instagram_events', 'insert, update, delete')
  and not has_table_privilege('service_role', 'public.instagram_events', 'insert, update, delete'),
  'no API role writes events directly; anon cannot read them'
);
select ok((select relrowsecurity from pg_class where oid = 'public.instagram_events'::regclass), 'row level security is on');
-- Plans PL/pgSQL keeps for the session must stay index lookups as the table grows (see the schema file).
select has_index('public', 'instagram_events', 'instagram_events_message_idx', array['message_id', 'account_id'],
  'the message index leads with message_id, so a lookup by (account_id, event_key) cannot take it for the account alone');
select ok(
  (select proconfig @> array['enable_seqscan=off'] from pg_proc where oid = 'public.store_instagram_events(text, jsonb, text)'::regprocedure),
  'store_instagram_events never plans a sequential scan'
);

-- Storing ----------------------------------------------------------------------------------------
set local role service_role;
select is(
  public.store_instagram_events('instagram', $$[
    {"id": "178419001", "time": 1764670000000, "messaging": [
      {"sender": {"id": "111"}, "recipient": {"id": "178419001"}, "timestamp": 1764670000000,
       "message": {"mid": "m.1", "text": "private"}}]},
    {"id": "178419002", "messaging": [
      {"sender": {"id": "178419002"}, "recipient": {"id": "111"}, "timestamp": 1764670001000,
       "message": {"mid": "m.2", "text": "reply", "is_echo": true}}]},
    {"id": "4242", "messaging": [{"sender": {"id": "1"}, "recipient": {"id": "4242"}, "timestamp": 1, "message": {"mid": "m.3"}}]}
  ]$$::jsonb),
  '{"stored": 2, "duplicates": 0, "unknown_account_events": 1, "wrong_app_events": 0, "unsends": 0}'::jsonb,
  'a delivery is stored for each account''s doctor; an unknown account is counted'
);
select throws_ok(
  $$select public.store_instagram_events('user', '[]')$$, '22023', null, 'only the instagram and page objects are stored'
);
reset role;
select results_eq(
  $$select doctor_id::text, direction, occurred_at, facebook_user_id from public.instagram_events order by id$$,
  $$values ('00000000-0000-4000-8000-00000000e001', 'incoming', to_timestamp(1764670000), '5559001'),
           ('00000000-0000-4000-8000-00000000e002', 'echo', to_timestamp(1764670001), '5559002')$$,
  'each event with its doctor, direction, Meta''s time and the Facebook user of the link'
);

-- Reading ----------------------------------------------------------------------------------------
set local role authenticated;
select set_config('request.jwt.claims', '{"sub": "00000000-0000-4000-8000-00000000e001", "role": "authenticated"}', true);
select results_eq(
  $$select message_id from public.instagram_events$$, $$values ('m.1')$$, 'a doctor reads their own events only'
);
select throws_ok(
  $$delete from public.instagram_events$$, '42501', null, 'a doctor cannot delete events'
);
reset role;
set local role anon;
select throws_ok($$select count(*) from public.instagram_events$$, '42501', null, 'anon reads nothing');
reset role;

-- Claims and retention --------------------------------------------------------------------------
set local role service_role;
select throws_ok(
  $$select public.claim_instagram_events('bad worker name', 10, 60)$$, '22023', null, 'a worker name is checked'
);
select is(
  (select count(*)::int from public.claim_instagram_events('w1', 10, 60)), 2, 'a worker claims what nobody holds'
);
select is(
  (select count(*)::int from public.claim_instagram_events('w2', 10, 60)), 0, 'leased events are not claimed twice'
);
select throws_ok(
  $$select public.purge_instagram_events(0)$$, '22023', null, 'a retention of at least a day'
);
reset role;
update public.instagram_events set received_at = now() - interval '91 days' where message_id = 'm.1';
set local role service_role;
select is(public.purge_instagram_events(90), 1, 'retention removes what is older than its days, and only that');
reset role;

select * from finish();
rollback;

-- Row level security and grants: what anon and authenticated doctors can see and do.
begin;
-- pgTAP is already in the extensions schema where the suite runs; the NOTICE saying so is noise.
set local client_min_messages to warning;
create extension if not exists pgtap;
select plan(17);

insert into auth.users (id) values
  ('00000000-0000-4000-8000-00000000b001'),
  ('00000000-0000-4000-8000-00000000b002');
insert into public.doctor_instagram (doctor_id, instagram_page_id, instagram_access_token, instagram_username, instagram_business_account_id) values
  ('00000000-0000-4000-8000-00000000b001', '2001', 'v1.a.b', 'doctor_one', '178412001'),
  ('00000000-0000-4000-8000-00000000b002', '2002', 'v1.c.d', 'doctor_two', '178412002');

select ok(
  (select relrowsecurity from pg_class where oid = 'public.doctor_instagram'::regclass),
  'row level security is enabled'
);
select policies_are('public', 'doctor_instagram', array[
  'Doctors can read their own Instagram link'
], 'only the read-own policy exists');
select ok(
  (select bool_and(qual like '%SELECT auth.uid()%') from pg_policies where tablename = 'doctor_instagram'),
  'policies call auth.uid() through a sub-select (evaluated once per statement)'
);
select ok(
  not has_column_privilege('authenticated', 'public.doctor_instagram', 'instagram_access_token', 'select')
  and not has_column_privilege('anon', 'public.doctor_instagram', 'instagram_access_token', 'select'),
  'no client role may select the token column'
);
select ok(
  not has_table_privilege('anon', 'public.doctor_instagram', 'select')
  and not has_any_column_privilege('anon', 'public.doctor_instagram', 'select'),
  'anon has no read privilege at all'
);
select ok(
  not has_table_privilege('service_role', 'public.doctor_instagram', 'insert')
  and not has_table_privilege('service_role', 'public.doctor_instagram', 'update'),
  'even service_role writes only through the SECURITY DEFINER functions'
);

-- As doctor one.
set local role authenticated;
set local "request.jwt.claims" to '{"sub":"00000000-0000-4000-8000-00000000b001","role":"authenticated"}';

select results_eq(
  $$select instagram_username from public.doctor_instagram$$,
  array['doctor_one'],
  'a doctor sees only their own row'
);
select throws_ok(
  $$select instagram_access_token from public.doctor_instagram$$,
  '42501', null, 'a doctor cannot read the token, even of their own row'
);
select throws_ok(
  $$insert into public.doctor_instagram (doctor_id, instagram_page_id, instagram_access_token, instagram_business_account_id)
    values ('00000000-0000-4000-8000-00000000b001', '2003', 'v1.e.f', '178412003')$$,
  '42501', null, 'a doctor cannot insert a link'
);
select throws_ok(
  $$update public.doctor_instagram set instagram_username = 'x'$$,
  '42501', null, 'a doctor cannot update a link'
);
select throws_ok(
  $$delete from public.doctor_instagram where doctor_id = '00000000-0000-4000-8000-00000000b001'$$,
  '42501', null, 'a doctor cannot delete a link directly, not even their own (disconnect goes through Meta)'
);
reset role;

select ok(
  not exists (select 1 from pg_policies where tablename = 'doctor_instagram' and cmd = 'DELETE'),
  'no delete policy is left'
);
select is(
  (select count(*)::int from public.doctor_instagram),
  2, 'both rows survived'
);
select ok(
  has_column_privilege('authenticated', 'public.doctor_instagram', 'facebook_user_id', 'select')
  and has_column_privilege('authenticated', 'public.doctor_instagram', 'granted_scopes', 'select'),
  'a doctor may read the Facebook user id and the granted scopes'
);

-- As anon.
set local role anon;
set local "request.jwt.claims" to '{"role":"anon"}';
select throws_ok($$select doctor_id from public.doctor_instagram$$, '42501', null, 'anon cannot read links');
select throws_ok($$delete from public.doctor_instagram$$, '42501', null, 'anon cannot delete links');
reset role;

select is(
  (select count(*)::int from public.doctor_instagram where doctor_id = '00000000-0000-4000-8000-00000000b002'),
  1, 'the other doctor''s row survived every attempt'
);

select * from finish();
rollback;

-- link_doctor_instagram(): success, relink, conflict, each state refusal, and its grants.
begin;
create extension if not exists pgtap;
select plan(19);

insert into auth.users (id) values
  ('00000000-0000-4000-8000-00000000d001'),
  ('00000000-0000-4000-8000-00000000d002');
insert into private.oauth_states (nonce_hash, doctor_id, expires_at)
select repeat(h, 64), '00000000-0000-4000-8000-00000000d001', now() + interval '10 minutes'
from unnest(array['1', '2', '3', '4']) as h;
insert into private.oauth_states (nonce_hash, doctor_id, expires_at)
values (repeat('5', 64), '00000000-0000-4000-8000-00000000d002', now() + interval '10 minutes');
insert into private.oauth_states (nonce_hash, doctor_id, created_at, expires_at)
values (repeat('6', 64), '00000000-0000-4000-8000-00000000d001', now() - interval '20 minutes', now() - interval '1 minute');

select ok(
  not has_function_privilege('anon', 'public.link_doctor_instagram(uuid, text, text, text, text, text, text, text)', 'execute')
  and not has_function_privilege('authenticated', 'public.link_doctor_instagram(uuid, text, text, text, text, text, text, text)', 'execute')
  and has_function_privilege('service_role', 'public.link_doctor_instagram(uuid, text, text, text, text, text, text, text)', 'execute'),
  'only service_role may link'
);
select is(
  (select prosecdef from pg_proc where oid = 'public.link_doctor_instagram(uuid, text, text, text, text, text, text, text)'::regprocedure),
  true, 'link_doctor_instagram is SECURITY DEFINER'
);
select is(
  (select proconfig from pg_proc where oid = 'public.link_doctor_instagram(uuid, text, text, text, text, text, text, text)'::regprocedure),
  array['search_path=""'], 'link_doctor_instagram pins an empty search_path'
);

set local role service_role;

select is(
  public.link_doctor_instagram('00000000-0000-4000-8000-00000000d001', repeat('1', 64), '4001', 'v1.token.one',
                               'Clinic One', 'clinic_one', '17840001', 'corr-link-1') ->> 'instagram_page_id',
  '4001', 'the first link returns the linked page'
);
reset role;
select results_eq(
  $$select instagram_page_id, instagram_access_token, instagram_username, page_name, instagram_business_account_id
    from public.doctor_instagram where doctor_id = '00000000-0000-4000-8000-00000000d001'$$,
  $$values ('4001', 'v1.token.one', 'clinic_one', 'Clinic One', '17840001')$$,
  'the row holds what was linked'
);
select isnt_empty(
  $$select 1 from private.oauth_states where nonce_hash = repeat('1', 64) and consumed_at is not null$$,
  'the state is consumed by the link'
);
set local role service_role;

select throws_ok(
  $$select public.link_doctor_instagram('00000000-0000-4000-8000-00000000d001', repeat('1', 64), '4001', 'v1.token.again')$$,
  'PT400', 'The sign-in link was already used; start again', 'a used state is refused'
);
select throws_ok(
  $$select public.link_doctor_instagram('00000000-0000-4000-8000-00000000d001', repeat('9', 64), '4001', 'v1.token.again')$$,
  'PT400', 'The sign-in link is not known; start again', 'an unknown state is refused'
);
select throws_ok(
  $$select public.link_doctor_instagram('00000000-0000-4000-8000-00000000d001', repeat('6', 64), '4001', 'v1.token.again')$$,
  'PT400', 'The sign-in link expired; start again', 'an expired state is refused'
);
select throws_ok(
  $$select public.link_doctor_instagram('00000000-0000-4000-8000-00000000d001', repeat('5', 64), '4001', 'v1.token.again')$$,
  'PT400', 'The sign-in link belongs to another doctor', 'another doctor''s state is refused'
);

-- Same page again with a fresh token: an update, connected_at kept.
select is(
  public.link_doctor_instagram('00000000-0000-4000-8000-00000000d001', repeat('2', 64), '4001', 'v1.token.two',
                               'Clinic One', 'clinic_one', '17840001', 'corr-link-2') ->> 'previous_page_id',
  '4001', 'relinking the same page reports it as the previous page'
);
-- Another page: the doctor moves to it.
select is(
  public.link_doctor_instagram('00000000-0000-4000-8000-00000000d001', repeat('3', 64), '4002', 'v1.token.three',
                               'Clinic Two', 'clinic_two', '17840002', 'corr-link-3') ->> 'instagram_page_id',
  '4002', 'relinking to another page moves the doctor to it'
);
reset role;
select is(
  (select count(*)::int from public.doctor_instagram where doctor_id = '00000000-0000-4000-8000-00000000d001'),
  1, 'a doctor has exactly one row after relinks'
);
select is(
  (select instagram_access_token from public.doctor_instagram where doctor_id = '00000000-0000-4000-8000-00000000d001'),
  'v1.token.three', 'the token was replaced'
);

-- Doctor two tries the page doctor one holds.
set local role service_role;
select throws_ok(
  $$select public.link_doctor_instagram('00000000-0000-4000-8000-00000000d002', repeat('5', 64), '4002', 'v1.token.four')$$,
  'PT409', 'Facebook Page 4002 is already linked to another doctor', 'a page held by another doctor is refused with 409'
);
reset role;
select is_empty(
  $$select 1 from public.doctor_instagram where doctor_id = '00000000-0000-4000-8000-00000000d002'$$,
  'the refused doctor got no row'
);
select is(
  (select consumed_at from private.oauth_states where nonce_hash = repeat('5', 64)),
  null, 'the refused link did not consume its state (nothing half-written)'
);
select is(
  (select count(*)::int from private.audit_log where resource_id = '00000000-0000-4000-8000-00000000d002'),
  0, 'the refused link wrote no audit entry'
);

-- The page doctor one left behind is free again.
set local role service_role;
select lives_ok(
  $$select public.link_doctor_instagram('00000000-0000-4000-8000-00000000d002', repeat('5', 64), '4001', 'v1.token.five')$$,
  'a page released by a relink can be linked by another doctor'
);
reset role;

select * from finish();
rollback;

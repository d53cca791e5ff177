-- link_pending_connection(): the only way a link is written. Success, relink, conflict, each refusal,
-- and that a failure leaves everything (the pending connection included) as it was.
begin;
-- pgTAP is already in the extensions schema where the suite runs; the NOTICE saying so is noise.
set local client_min_messages to warning;
create extension if not exists pgtap;
select plan(23);

insert into auth.users (id) values
  ('00000000-0000-4000-8000-00000000d001'),
  ('00000000-0000-4000-8000-00000000d002');
-- A pending connection offering Pages 4001 and 4002, with tokens named after it.
create procedure pg_temp.pending(h text, doctor uuid, expires_at timestamptz default now() + interval '10 minutes')
language sql as $$
  insert into private.pending_connections (token_hash, doctor_id, pages, created_at, expires_at, facebook_user_id, granted_scopes)
  values (repeat(h, 64), doctor, format(
    '[{"page_id": "4001", "page_name": "Clinic One", "instagram_account_id": "17840001", "instagram_username": "clinic_one", "access_token": "v1.token.%s1"},
      {"page_id": "4002", "page_name": "Clinic Two", "instagram_account_id": "17840002", "instagram_username": "clinic_two", "access_token": "v1.token.%s2"}]',
    h, h)::jsonb, least(now(), expires_at - interval '1 minute'), expires_at, '7770001', array['pages_show_list', 'instagram_basic']);
$$;
call pg_temp.pending('1', '00000000-0000-4000-8000-00000000d001');
call pg_temp.pending('2', '00000000-0000-4000-8000-00000000d001');
call pg_temp.pending('5', '00000000-0000-4000-8000-00000000d002');
call pg_temp.pending('6', '00000000-0000-4000-8000-00000000d001', now() - interval '1 minute');

select hasnt_function('public', 'link_doctor_instagram', 'the callback-era link function is gone');

set local role service_role;
select is(
  public.link_pending_connection('00000000-0000-4000-8000-00000000d001', repeat('1', 64), '4001', 'corr-link-1')
    - 'connected_at',
  '{"doctor_id": "00000000-0000-4000-8000-00000000d001", "instagram_page_id": "4001", "instagram_username": "clinic_one",
    "page_name": "Clinic One", "instagram_business_account_id": "17840001", "previous_page_id": null,
    "facebook_user_id": "7770001", "granted_scopes": ["pages_show_list", "instagram_basic"], "status": "active",
    "token_kind": "page", "instagram_user_id": null, "token_expires_at": null, "previous_token_kind": null,
    "previous_instagram_account_id": null}'::jsonb,
  'the first link returns what was linked'
);
reset role;
select results_eq(
  $$select instagram_page_id, instagram_access_token, instagram_username, page_name, instagram_business_account_id
    from public.doctor_instagram where doctor_id = '00000000-0000-4000-8000-00000000d001'$$,
  $$values ('4001', 'v1.token.11', 'clinic_one', 'Clinic One', '17840001')$$,
  'the row holds the chosen Page and its token, copied from the pending connection'
);
select results_eq(
  $$select used_at is not null, pages from private.pending_connections where token_hash = repeat('1', 64)$$,
  $$values (true, '[]'::jsonb)$$,
  'the pending connection is used and keeps no Page token'
);
select is_empty(
  $$select 1 from private.pending_connections where token_hash in (repeat('2', 64), repeat('6', 64))$$,
  'the doctor''s other pending connections (open or expired, never used) are gone with their tokens'
);
select isnt_empty(
  $$select 1 from private.pending_connections where token_hash = repeat('5', 64)$$,
  'another doctor''s are untouched'
);
call pg_temp.pending('6', '00000000-0000-4000-8000-00000000d001', now() - interval '1 minute');
call pg_temp.pending('2', '00000000-0000-4000-8000-00000000d001');

set local role service_role;
select throws_ok(
  $$select public.link_pending_connection('00000000-0000-4000-8000-00000000d001', repeat('1', 64), '4001')$$,
  'PT400', 'This connection was already used', 'a used pending connection is refused'
);
select throws_ok(
  $$select public.link_pending_connection('00000000-0000-4000-8000-00000000d001', repeat('9', 64), '4001')$$,
  'PT400', 'This connection is not known', 'an unknown one is refused'
);
select throws_ok(
  $$select public.link_pending_connection('00000000-0000-4000-8000-00000000d001', repeat('6', 64), '4001')$$,
  'PT400', 'This connection expired', 'an expired one is refused'
);
select throws_ok(
  $$select public.link_pending_connection('00000000-0000-4000-8000-00000000d001', repeat('5', 64), '4001')$$,
  'PT403', 'This connection was started by another account', 'another doctor''s is refused'
);
select throws_ok(
  $$select public.link_pending_connection('00000000-0000-4000-8000-00000000d001', repeat('2', 64), '9999')$$,
  'PT422', 'That Page is not among the Pages shared', 'a Page that was not offered is refused'
);
select throws_ok(
  $$select public.link_pending_connection('00000000-0000-4000-8000-00000000d001', repeat('2', 64), null)$$,
  'PT422', 'That Page is not among the Pages shared', 'with several Pages, one must be named'
);

-- Same Page again with a fresh token: an update, connected_at kept.
reset role;
delete from private.pending_connections where token_hash = repeat('6', 64);
update public.doctor_instagram set connected_at = '2026-01-01' where doctor_id = '00000000-0000-4000-8000-00000000d001';
set local role service_role;
select is(
  public.link_pending_connection('00000000-0000-4000-8000-00000000d001', repeat('2', 64), '4001', 'corr-link-2')
    ->> 'previous_page_id',
  '4001', 'relinking the same Page reports it as the previous Page'
);
reset role;
select results_eq(
  $$select instagram_access_token, connected_at from public.doctor_instagram
    where doctor_id = '00000000-0000-4000-8000-00000000d001'$$,
  $$values ('v1.token.21', '2026-01-01'::timestamptz)$$,
  'the token was replaced and connected_at kept'
);
-- Another Page: the doctor moves to it.
call pg_temp.pending('3', '00000000-0000-4000-8000-00000000d001');
set local role service_role;
select is(
  public.link_pending_connection('00000000-0000-4000-8000-00000000d001', repeat('3', 64), '4002', 'corr-link-3')
    ->> 'instagram_page_id',
  '4002', 'relinking to another Page moves the doctor to it'
);
reset role;
select results_eq(
  $$select count(*)::int, min(instagram_access_token), min(connected_at) > '2026-01-02'
    from public.doctor_instagram where doctor_id = '00000000-0000-4000-8000-00000000d001'$$,
  $$values (1, 'v1.token.32', true)$$,
  'still one row, with the new token and a new connected_at'
);

-- Doctor two tries the Page doctor one holds.
set local role service_role;
select is(
  public.open_pending_connection('00000000-0000-4000-8000-00000000d002', repeat('5', 64)) -> 'pages',
  '[{"page_id": "4001", "page_name": "Clinic One", "instagram_username": "clinic_one"},
    {"page_id": "4002", "page_name": "Clinic Two", "instagram_username": "clinic_two", "taken": true}]'::jsonb,
  'the picker marks the Page another doctor holds as taken, and never says who'
);
select throws_ok(
  $$select public.link_pending_connection('00000000-0000-4000-8000-00000000d002', repeat('5', 64), '4002')$$,
  'PT409', 'The Facebook Page "Clinic Two" (4002) is already linked to another doctor. They must disconnect it first, or choose another Page.',
  'a Page held by another doctor is refused with 409, naming it'
);
reset role;
select is_empty(
  $$select 1 from public.doctor_instagram where doctor_id = '00000000-0000-4000-8000-00000000d002'$$,
  'the refused doctor got no row'
);
select results_eq(
  $$select used_at, jsonb_array_length(pages) from private.pending_connections where token_hash = repeat('5', 64)$$,
  $$values (null::timestamptz, 2)$$,
  'the refused link consumed nothing (nothing half-written)'
);
select is(
  (select count(*)::int from private.audit_log where resource_id = '00000000-0000-4000-8000-00000000d002'),
  0, 'the refused link wrote no audit entry'
);

-- The Page doctor one left behind is free again.
set local role service_role;
select lives_ok(
  $$select public.link_pending_connection('00000000-0000-4000-8000-00000000d002', repeat('5', 64), '4001')$$,
  'a Page released by a relink can be linked by another doctor'
);
reset role;
select results_eq(
  $$select doctor_id::text, instagram_page_id from public.doctor_instagram order by instagram_page_id$$,
  $$values ('00000000-0000-4000-8000-00000000d002', '4001'), ('00000000-0000-4000-8000-00000000d001', '4002')$$,
  'each Page belongs to exactly one doctor'
);

select * from finish();
rollback;

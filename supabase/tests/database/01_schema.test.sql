-- Shape and constraints of doctor_instagram.
begin;
-- pgTAP is already in the extensions schema where the suite runs; the NOTICE saying so is noise.
set local client_min_messages to warning;
create extension if not exists pgtap;
select plan(14);

select has_table('public', 'doctor_instagram', 'doctor_instagram exists');
select col_is_pk('public', 'doctor_instagram', 'doctor_id', 'doctor_id is the primary key');
select col_is_unique('public', 'doctor_instagram', 'instagram_page_id', 'a page is linked to at most one doctor');
select fk_ok('public', 'doctor_instagram', 'doctor_id', 'auth', 'users', 'id');
select col_not_null('public', 'doctor_instagram', 'instagram_access_token', 'the token is required');
select has_column('public', 'doctor_instagram', 'page_name', 'page name is stored');
select has_column('public', 'doctor_instagram', 'instagram_business_account_id', 'IG account id is stored');
select has_column('public', 'doctor_instagram', 'connected_at', 'connected_at is stored');
select has_trigger('public', 'doctor_instagram', 'doctor_instagram_touch_updated_at', 'updated_at is maintained');

insert into auth.users (id) values ('00000000-0000-4000-8000-00000000a001');

select throws_ok(
  $$insert into public.doctor_instagram (doctor_id, instagram_page_id, instagram_access_token, instagram_business_account_id)
    values ('00000000-0000-4000-8000-00000000a001', '', 'v1.iv.ct', '178410001')$$,
  '23514', null, 'an empty page id is refused'
);
select throws_ok(
  $$insert into public.doctor_instagram (doctor_id, instagram_page_id, instagram_access_token, instagram_business_account_id)
    values ('00000000-0000-4000-8000-00000000a001', '1234', 'EAAplaintexttoken', '178410001')$$,
  '23514', null, 'a token that is not application ciphertext is refused'
);
select throws_ok(
  $$insert into public.doctor_instagram (doctor_id, instagram_page_id, instagram_access_token, instagram_username, instagram_business_account_id)
    values ('00000000-0000-4000-8000-00000000a001', '1234', 'v1.iv.ct', repeat('x', 65), '178410001')$$,
  '23514', null, 'an over-long username is refused'
);

insert into public.doctor_instagram (doctor_id, instagram_page_id, instagram_access_token, instagram_business_account_id)
values ('00000000-0000-4000-8000-00000000a001', '1234', 'v1.iv.ct', '178410001');
update public.doctor_instagram set updated_at = '2000-01-01', page_name = 'Clinic'
where doctor_id = '00000000-0000-4000-8000-00000000a001';
select ok(
  (select updated_at > '2001-01-01' from public.doctor_instagram where doctor_id = '00000000-0000-4000-8000-00000000a001'),
  'the trigger sets updated_at on every update'
);

delete from auth.users where id = '00000000-0000-4000-8000-00000000a001';
select is_empty(
  $$select 1 from public.doctor_instagram where doctor_id = '00000000-0000-4000-8000-00000000a001'$$,
  'deleting the auth user deletes the link (cascade)'
);

select * from finish();
rollback;

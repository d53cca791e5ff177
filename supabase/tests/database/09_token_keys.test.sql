-- Token keys: who may ask which encryption keys stored tokens use, and that the counts are right for
-- v1 values (key `legacy`), v2 values under several keys, and the pending connections that can still
-- be finished (and no others).
begin;
set local client_min_messages to warning;
create extension if not exists pgtap;
select plan(9);

-- Only this file's rows (the transaction is rolled back at the end).
delete from public.doctor_instagram;
delete from private.pending_connections;

insert into auth.users (id) values
  ('00000000-0000-4000-8000-00000000c001'),
  ('00000000-0000-4000-8000-00000000c002'),
  ('00000000-0000-4000-8000-00000000c003'),
  ('00000000-0000-4000-8000-00000000c004'),
  ('00000000-0000-4000-8000-00000000c005'),
  ('00000000-0000-4000-8000-00000000c006'),
  ('00000000-0000-4000-8000-00000000c007'),
  ('00000000-0000-4000-8000-00000000c008');
-- Links: two v1 values and one v2 under `legacy` (all key `legacy`), one under k1, two under k2, and
-- one in a form the functions never write (the CHECK accepts any "v<n>." prefix).
insert into public.doctor_instagram (doctor_id, instagram_page_id, instagram_access_token, instagram_business_account_id) values
  ('00000000-0000-4000-8000-00000000c001', '9101', 'v1.aXY.Y3Q', '178419101'),
  ('00000000-0000-4000-8000-00000000c002', '9102', 'v1.aXY2.Y3Qy', '178419102'),
  ('00000000-0000-4000-8000-00000000c003', '9103', 'v2.legacy.aXY.Y3Q', '178419103'),
  ('00000000-0000-4000-8000-00000000c004', '9104', 'v2.k1.aXY.Y3Q', '178419104'),
  ('00000000-0000-4000-8000-00000000c005', '9105', 'v2.k2.aXY.Y3Q', '178419105'),
  ('00000000-0000-4000-8000-00000000c006', '9106', 'v2.k2.aXY2.Y3Qy', '178419106'),
  ('00000000-0000-4000-8000-00000000c007', '9107', 'v3.something.else', '178419107');
-- Pending connections: one open (three Pages: k2, v1, k3); one expired and one used, whose tokens are
-- never decrypted again (k9, k8: not counted).
insert into private.pending_connections (token_hash, doctor_id, pages, created_at, expires_at, used_at) values
  (repeat('1', 64), '00000000-0000-4000-8000-00000000c008',
   '[{"page_id": "9201", "instagram_account_id": "1", "access_token": "v2.k2.aXY.Y3Q"},
     {"page_id": "9202", "instagram_account_id": "2", "access_token": "v1.aXY.Y3Q"},
     {"page_id": "9203", "instagram_account_id": "3", "access_token": "v2.k3.aXY.Y3Q"}]',
   now() - interval '1 minute', now() + interval '9 minutes', null),
  (repeat('2', 64), '00000000-0000-4000-8000-00000000c008',
   '[{"page_id": "9204", "instagram_account_id": "4", "access_token": "v2.k9.aXY.Y3Q"}]',
   now() - interval '20 minutes', now() - interval '10 minutes', null),
  (repeat('3', 64), '00000000-0000-4000-8000-00000000c008',
   '[{"page_id": "9205", "instagram_account_id": "5", "access_token": "v2.k8.aXY.Y3Q"}]',
   now() - interval '1 minute', now() + interval '9 minutes', now());

-- Privileges -------------------------------------------------------------------------------------
select ok(
  (select not has_function_privilege('anon', oid, 'execute')
     and not has_function_privilege('authenticated', oid, 'execute')
     and has_function_privilege('service_role', oid, 'execute')
     and prosecdef and proconfig = array['search_path=""']
   from pg_proc where oid = 'public.token_key_usage()'::regprocedure),
  'only service_role may ask for the token key usage; SECURITY DEFINER with an empty search_path'
);
select ok(
  not has_function_privilege('anon', 'private.token_key_id(text)', 'execute')
  and not has_function_privilege('authenticated', 'private.token_key_id(text)', 'execute')
  and not has_function_privilege('service_role', 'private.token_key_id(text)', 'execute'),
  'the key id parser is private to the functions that use it'
);
set local role authenticated;
select throws_ok($$select * from public.token_key_usage()$$, '42501', null, 'a doctor may not ask');
reset role;
set local role anon;
select throws_ok($$select * from public.token_key_usage()$$, '42501', null, 'nor may anon');
reset role;

-- Key ids, read as page_token.ts reads them --------------------------------------------------------
select is(
  array[private.token_key_id('v1.aXY.Y3Q'), private.token_key_id('v2.k-1_a.aXY.Y3Q'),
        private.token_key_id('v2.legacy.aXY.Y3Q')],
  array['legacy', 'k-1_a', 'legacy'],
  'v1 is the key legacy; v2 names its key'
);
select is(
  array[private.token_key_id('v2.K1.aXY.Y3Q'), private.token_key_id('v2.k1.aXY'),
        private.token_key_id('v1.aXY.Y3Q.extra'), private.token_key_id('v2.-k.aXY.Y3Q'),
        private.token_key_id('v2.k1.a+b.Y3Q'), private.token_key_id('EAAGrawtoken'),
        private.token_key_id(null)],
  array[null, null, null, null, null, null, null]::text[],
  'anything else has no key id: a bad id, a part too few or too many, not base64url, not ciphertext'
);

-- Counts ------------------------------------------------------------------------------------------
set local role service_role;
select results_eq(
  $$select key_id, link_tokens, pending_tokens from public.token_key_usage()$$,
  $$values ('k1'::text, 1::bigint, 0::bigint), ('k2', 2, 1), ('k3', 0, 1), ('legacy', 3, 1), (null, 1, 0)$$,
  'per key id, in order: links, and the Pages of the open pending connection only'
);
reset role;

-- A re-encrypted row moves to its new key; an emptied pending connection counts for nothing.
update public.doctor_instagram set instagram_access_token = 'v2.k3.aXY3.Y3Qz'
where doctor_id in ('00000000-0000-4000-8000-00000000c004', '00000000-0000-4000-8000-00000000c007');
update private.pending_connections set pages = '[]' where token_hash = repeat('1', 64);
set local role service_role;
select results_eq(
  $$select key_id, link_tokens, pending_tokens from public.token_key_usage()$$,
  $$values ('k2'::text, 2::bigint, 0::bigint), ('k3', 2, 0), ('legacy', 3, 0)$$,
  'k1 and the unknown form are gone once no row uses them'
);
reset role;

delete from public.doctor_instagram;
set local role service_role;
select is_empty($$select * from public.token_key_usage()$$, 'no stored token: no row');
reset role;

select * from finish();
rollback;

-- The audit trail: what each change records, that it never holds a token, and that it is append-only.
begin;
-- pgTAP is already in the extensions schema where the suite runs; the NOTICE saying so is noise.
set local client_min_messages to warning;
create extension if not exists pgtap;
select plan(15);

insert into auth.users (id) values ('00000000-0000-4000-8000-00000000e001');
-- A link, then a relink of the same Page renamed (linking removes other pending connections, so the
-- second one is stored after the first link).
create procedure pg_temp.pending(h text, name text)
language sql as $$
  insert into private.pending_connections (token_hash, doctor_id, pages, expires_at, facebook_user_id)
  values (repeat(h, 64), '00000000-0000-4000-8000-00000000e001', jsonb_build_array(jsonb_build_object(
    'page_id', '5001', 'page_name', name, 'instagram_account_id', '17850001', 'instagram_username', 'clinic',
    'access_token', 'v1.secret-cipher-' || h)), now() + interval '10 minutes', '9990001');
$$;
call pg_temp.pending('1', 'Clinic');

set local role service_role;
set local "request.jwt.claims" to '{"role":"service_role"}';
select lives_ok(
  $$select public.link_pending_connection('00000000-0000-4000-8000-00000000e001', repeat('1', 64), '5001', 'corr-audit-1')$$,
  'a link'
);
reset role;
call pg_temp.pending('2', 'Clinic Renamed');
set local role service_role;
select lives_ok(
  $$select public.link_pending_connection('00000000-0000-4000-8000-00000000e001', repeat('2', 64), '5001', 'corr-audit-2')$$,
  'a relink of the same Page'
);
reset role;

select results_eq(
  $$select actor_id::text, actor_role, action, resource_type, resource_id
    from private.audit_log where correlation_id = 'corr-audit-1'$$,
  $$values ('00000000-0000-4000-8000-00000000e001', 'service_role', 'instagram.connected', 'doctor_instagram',
            '00000000-0000-4000-8000-00000000e001')$$,
  'a link records actor, role, action, resource and correlation id'
);
select is(
  (select metadata from private.audit_log where correlation_id = 'corr-audit-1'),
  '{"page_id": "5001", "page_name": "Clinic", "instagram_username": "clinic", "instagram_business_account_id": "17850001"}'::jsonb,
  'a link records the non-secret fields'
);
select is(
  (select metadata from private.audit_log where correlation_id = 'corr-audit-2'),
  '{"changed": {"page_name": {"to": "Clinic Renamed", "from": "Clinic"}}, "token_rotated": true}'::jsonb,
  'a relink records what changed and that the token rotated, not its value'
);
select is(
  (select count(*)::int from private.audit_log where correlation_id = 'corr-audit-2'),
  1, 'one change, one entry'
);
select is_empty(
  $$select 1 from private.audit_log where metadata::text like '%secret-cipher%' or metadata::text like '%access_token%'$$,
  'no audit entry holds a token'
);

select ok(
  not has_table_privilege('anon', 'private.audit_log', 'select, insert, update, delete, truncate')
  and not has_table_privilege('authenticated', 'private.audit_log', 'select, insert, update, delete, truncate'),
  'client roles have no privilege on the audit log'
);
select ok(
  not has_table_privilege('service_role', 'private.audit_log', 'insert, update, delete, truncate'),
  'service_role cannot write or erase the audit log'
);

set local role authenticated;
set local "request.jwt.claims" to '{"sub":"00000000-0000-4000-8000-00000000e001","role":"authenticated"}';
select throws_ok($$update private.audit_log set action = 'instagram.connected'$$, '42501', null, 'a doctor cannot edit the audit log');
select throws_ok($$delete from private.audit_log$$, '42501', null, 'a doctor cannot delete from the audit log');
select throws_ok(
  $$insert into private.audit_log (actor_role, action, resource_type, resource_id) values ('x', 'instagram.connected', 'doctor_instagram', 'x')$$,
  '42501', null, 'a doctor cannot forge an audit entry'
);
reset role;

set local role service_role;
select throws_ok($$update private.audit_log set action = 'instagram.connected'$$, '42501', null, 'service_role cannot edit the audit log');
reset role;

-- Deleting the user (as Supabase Auth does) cascades to the link and is audited.
set local "request.jwt.claims" to '';
delete from auth.users where id = '00000000-0000-4000-8000-00000000e001';
select ok(
  (select action = 'instagram.disconnected' and actor_role = session_user::text and metadata ->> 'page_id' = '5001'
   from private.audit_log where resource_id = '00000000-0000-4000-8000-00000000e001' order by id desc limit 1),
  'a cascade from auth.users is audited as a disconnect by the database user'
);
select is(
  (select count(*)::int from private.audit_log where resource_id = '00000000-0000-4000-8000-00000000e001'),
  3, 'connect, update and disconnect: three entries'
);

select * from finish();
rollback;

-- The link's life with Meta: disconnect (prepare, then delete with Meta's outcome audited), Meta's
-- deauthorize and data deletion (only that Facebook user's rows, each removal audited with actor meta),
-- the data deletion requests (no client role reaches them; a replay is the same request).
begin;
-- pgTAP is already in the extensions schema where the suite runs; the NOTICE saying so is noise.
set local client_min_messages to warning;
create extension if not exists pgtap;
select plan(32);

insert into auth.users (id) values
  ('00000000-0000-4000-8000-00000000a101'),
  ('00000000-0000-4000-8000-00000000a102'),
  ('00000000-0000-4000-8000-00000000a103'),
  ('00000000-0000-4000-8000-00000000a104');
-- Doctors 1 and 2 linked Pages through the same Facebook user (a practice manager); doctor 3 through
-- another. Everything here is an hour old, so a request issued now covers it.
insert into public.doctor_instagram (doctor_id, instagram_page_id, instagram_access_token, instagram_username, facebook_user_id, granted_scopes, instagram_business_account_id) values
  ('00000000-0000-4000-8000-00000000a101', '8101', 'v1.tok.one', 'one', '5550001', array['pages_show_list'], '178418101'),
  ('00000000-0000-4000-8000-00000000a102', '8102', 'v1.tok.two', 'two', '5550001', array['pages_show_list'], '178418102'),
  ('00000000-0000-4000-8000-00000000a103', '8103', 'v1.tok.three', 'three', '5550003', array['pages_show_list'], '178418103');
-- Doctor 4 has a pending connection from user 5550001, and open and claimed states.
update public.doctor_instagram set updated_at = now() - interval '1 hour';
insert into private.pending_connections (token_hash, doctor_id, pages, created_at, expires_at, facebook_user_id)
values (repeat('4', 64), '00000000-0000-4000-8000-00000000a104',
        '[{"page_id": "8104", "instagram_account_id": "1", "access_token": "v1.x.y"}]',
        now() - interval '1 minute', now() + interval '9 minutes', '5550001');
insert into private.oauth_states (nonce_hash, doctor_id, created_at, expires_at, consumed_at) values
  (repeat('a', 64), '00000000-0000-4000-8000-00000000a104', now() - interval '1 minute', now() + interval '9 minutes', null),
  (repeat('b', 64), '00000000-0000-4000-8000-00000000a104', now() - interval '1 minute', now() + interval '9 minutes', now()),
  (repeat('c', 64), '00000000-0000-4000-8000-00000000a103', now() - interval '1 minute', now() + interval '9 minutes', null);

-- Privileges ------------------------------------------------------------------------------------
select ok(
  (select bool_and(
     not has_function_privilege('anon', oid, 'execute')
     and not has_function_privilege('authenticated', oid, 'execute')
     and has_function_privilege('service_role', oid, 'execute')
     and prosecdef and proconfig = array['search_path=""'])
   from pg_proc
   where oid in ('public.prepare_disconnect(uuid, int)'::regprocedure,
                 'public.disconnect_doctor_instagram(uuid, jsonb, text)'::regprocedure,
                 'public.subscription_target(text, text)'::regprocedure,
                 'public.forget_facebook_user(text, text, timestamptz, text)'::regprocedure,
                 'public.request_data_deletion(text, text, text, timestamptz, text)'::regprocedure,
                 'public.data_deletion_status(text)'::regprocedure)),
  'only service_role may run the disconnect and Meta callback functions; each is SECURITY DEFINER with an empty search_path'
);
select ok(
  not has_table_privilege('anon', 'private.data_deletion_requests', 'select, insert, update, delete')
  and not has_table_privilege('authenticated', 'private.data_deletion_requests', 'select, insert, update, delete')
  and not has_table_privilege('service_role', 'private.data_deletion_requests', 'select, insert, update, delete'),
  'no API role may touch data deletion requests directly'
);
select has_index('public', 'doctor_instagram', 'doctor_instagram_facebook_user_id_idx', 'links are found by Facebook user');
select has_index('private', 'pending_connections', 'pending_connections_facebook_user_id_idx', 'pending connections too');

-- prepare_disconnect -----------------------------------------------------------------------------
set local role service_role;
select throws_ok(
  $$select public.prepare_disconnect('00000000-0000-4000-8000-00000000a104')$$,
  'PT404', 'No Instagram account is connected', 'no link: not_connected'
);
select is(
  public.prepare_disconnect('00000000-0000-4000-8000-00000000a101'),
  '{"leased": false, "leased_until": null, "leased_by": null, "token_kind": "page", "page_id": "8101", "instagram_account_id": "178418101", "access_token": "v1.tok.one",
    "facebook_user_id": "5550001", "facebook_user_shared": true}'::jsonb,
  'the Page, its encrypted token and the Facebook user, shared with doctor 2'
);
select is(
  public.prepare_disconnect('00000000-0000-4000-8000-00000000a103') ->> 'facebook_user_shared',
  'false', 'doctor 3''s Facebook user is theirs alone'
);
reset role;
insert into private.pending_connections (token_hash, doctor_id, pages, expires_at, facebook_user_id)
values (repeat('9', 64), '00000000-0000-4000-8000-00000000a104', '[]', now() + interval '5 minutes', '5550003');
set local role service_role;
select is(
  public.prepare_disconnect('00000000-0000-4000-8000-00000000a103') ->> 'facebook_user_shared',
  'true', 'another doctor''s connection waiting to be finished also needs the grant'
);
reset role;
delete from private.pending_connections where token_hash = repeat('9', 64);
set local role service_role;

-- disconnect_doctor_instagram --------------------------------------------------------------------
select is(
  public.disconnect_doctor_instagram('00000000-0000-4000-8000-00000000a101',
    '{"unsubscribed": false, "revoked": "skipped"}', 'corr-disc-1'),
  '{"page_id": "8101", "access_token": "v1.tok.one", "token_kind": "page", "instagram_account_id": "178418101", "facebook_user_id": "5550001"}'::jsonb,
  'the doctor''s link is deleted, and what was deleted is returned'
);
select is(
  public.disconnect_doctor_instagram('00000000-0000-4000-8000-00000000a101', '{}', 'corr-disc-2'),
  null, 'nothing left: null'
);
select is(public.subscription_target('page', '8101')->'holder', 'null'::jsonb, 'the Page is free again');
select isnt(public.subscription_target('page', '8102')->'holder', 'null'::jsonb, 'another doctor''s Page is held');
reset role;
select results_eq(
  $$select actor_id::text, action, metadata from private.audit_log where correlation_id = 'corr-disc-1'$$,
  $$values ('00000000-0000-4000-8000-00000000a101', 'instagram.disconnected',
            '{"page_id": "8101", "instagram_username": "one", "meta": {"unsubscribed": false, "revoked": "skipped"}}'::jsonb)$$,
  'the disconnect is audited with the doctor as actor and what Meta said'
);
select is(
  current_setting('app.audit_metadata', true), '', 'the Meta outcome does not leak into later audit entries'
);

-- forget_facebook_user (deauthorize) -------------------------------------------------------------
set local role service_role;
select throws_ok(
  $$select public.forget_facebook_user('5550001', 'instagram.disconnected', now())$$,
  '22023', null, 'only the two Meta actions are accepted'
);
select is(
  public.forget_facebook_user('5550001', 'instagram.deauthorized', now() - interval '2 hours', 'corr-deauth-0'),
  '{"links_deleted": 0, "pending_connections_deleted": 0, "states_deleted": 0}'::jsonb,
  'a request older than the grants touches nothing (a late or replayed request)'
);
select is(
  public.forget_facebook_user('5550001', 'instagram.deauthorized', now(), 'corr-deauth-1'),
  '{"links_deleted": 1, "pending_connections_deleted": 1, "states_deleted": 1}'::jsonb,
  'deauthorize deletes that user''s link, pending connection and the unused state of the doctors concerned'
);
reset role;
select is_empty(
  $$select 1 from public.doctor_instagram where facebook_user_id = '5550001'$$,
  'no link of that Facebook user is left'
);
select is_empty(
  $$select 1 from private.pending_connections where facebook_user_id = '5550001'$$,
  'nor a pending connection'
);
select results_eq(
  $$select nonce_hash from private.oauth_states order by nonce_hash$$,
  $$values (repeat('b', 64)), (repeat('c', 64))$$,
  'the claimed state and the other doctor''s state are kept; the concerned doctor''s open state is gone'
);
select is(
  (select instagram_page_id from public.doctor_instagram where doctor_id = '00000000-0000-4000-8000-00000000a103'),
  '8103', 'another Facebook user''s link is untouched'
);
select results_eq(
  $$select actor_id, actor_role, action, resource_id, metadata from private.audit_log
    where correlation_id = 'corr-deauth-1' order by resource_id$$,
  $$values (null::uuid, 'meta', 'instagram.deauthorized', '00000000-0000-4000-8000-00000000a102',
            '{"page_id": "8102", "instagram_username": "two"}'::jsonb),
           (null::uuid, 'meta', 'instagram.deauthorized', '00000000-0000-4000-8000-00000000a104',
            '{"pending_connections_deleted": 1}'::jsonb)$$,
  'each removal is audited with actor meta'
);
select is_empty(
  $$select 1 from private.audit_log where metadata::text like '%5550001%'$$,
  'no audit entry names the Facebook user'
);
select is(
  (select count(*)::int from private.audit_log where actor_role = 'meta' and correlation_id is distinct from 'corr-deauth-1'),
  0, 'Meta as actor does not leak into later entries'
);
set local role service_role;
select is(
  public.forget_facebook_user('5550001', 'instagram.deauthorized', now(), 'corr-deauth-2'),
  '{"links_deleted": 0, "pending_connections_deleted": 0, "states_deleted": 0}'::jsonb,
  'a second deauthorize finds nothing and changes nothing'
);

-- Data deletion requests ------------------------------------------------------------------------
select is(
  public.request_data_deletion('5550003', repeat('e', 64), 'CONFIRM-abcdefghijkl', now(), 'corr-del-1'),
  '{"confirmation_code": "CONFIRM-abcdefghijkl", "status": "completed", "replay": false, "events_deleted": 0}'::jsonb,
  'a data deletion request is recorded and carried out'
);
select is(
  public.request_data_deletion('5550003', repeat('e', 64), 'ANOTHER-abcdefghijk', now(), 'corr-del-2'),
  '{"confirmation_code": "CONFIRM-abcdefghijkl", "status": "completed", "replay": true}'::jsonb,
  'the same request again answers the first confirmation code'
);
reset role;
select results_eq(
  $$select confirmation_code, status, completed_at is not null from private.data_deletion_requests$$,
  $$values ('CONFIRM-abcdefghijkl', 'completed', true)$$,
  'one request, completed, holding no personal data'
);
select results_eq(
  $$select action, actor_role, resource_id from private.audit_log where correlation_id in ('corr-del-1', 'corr-del-2')$$,
  $$values ('instagram.deleted_by_meta', 'meta', '00000000-0000-4000-8000-00000000a103')$$,
  'the deletion is audited once, as deleted_by_meta'
);
set local role service_role;
select is(
  public.data_deletion_status('CONFIRM-abcdefghijkl') - 'requested_at' - 'completed_at',
  '{"confirmation_code": "CONFIRM-abcdefghijkl", "status": "completed", "events_deleted": 0}'::jsonb,
  'its status can be read by confirmation code'
);
select throws_ok(
  $$select public.data_deletion_status('NO-SUCH-CODE-abcdefgh')$$,
  'PT404', 'No data deletion request has this code', 'an unknown code: deletion_request_unknown'
);
reset role;

-- A database that cannot write now (read-only mode, a standby) refuses a disconnect at its first step,
-- before the function unsubscribes the Page at Meta: prepare_disconnect() locks the link.
insert into auth.users (id) values ('00000000-0000-4000-8000-00000000a105');
insert into public.doctor_instagram (doctor_id, instagram_page_id, instagram_access_token, instagram_username, facebook_user_id, granted_scopes, instagram_business_account_id)
values ('00000000-0000-4000-8000-00000000a105', '8105', 'v1.tok.five', 'five', '5550005', array['pages_show_list'], '178418105');
set local transaction_read_only = on;
set local role service_role;
select throws_ok(
  $$select public.prepare_disconnect('00000000-0000-4000-8000-00000000a105')$$,
  '25006', null, 'in a read-only transaction, prepare_disconnect is refused (25006), so Meta is never called'
);
reset role;

select * from finish();
rollback;

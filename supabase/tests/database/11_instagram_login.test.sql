-- Instagram Login (issue 18): a link without a Page, whose identity is the Instagram account on both
-- paths. The pending connection, open and link; the 409 both ways across paths; switching path and
-- reconnecting; Meta's Instagram callbacks; webhooks only under their own app; the token refresh; the
-- reasons of each kind of link; what a doctor may read.
begin;
set local client_min_messages to warning;
create extension if not exists pgtap;
select plan(77);

-- A = Instagram Login (account 17841001, Instagram user 9001); B = Page 7002 (account 17841002);
-- C = tries to take what others hold; D = Page 7004 (account 17841004); E = an Instagram Login link
-- whose token maintenance refreshes (account 17841005, Instagram user 9005).
insert into auth.users (id) values
  ('00000000-0000-4000-8000-0000000000a1'), ('00000000-0000-4000-8000-0000000000b2'),
  ('00000000-0000-4000-8000-0000000000c3'), ('00000000-0000-4000-8000-0000000000d4'),
  ('00000000-0000-4000-8000-0000000000e5');
insert into public.doctor_instagram (doctor_id, instagram_page_id, instagram_access_token, instagram_business_account_id,
  facebook_user_id, page_name, connected_at, updated_at)
values
  ('00000000-0000-4000-8000-0000000000b2', '7002', 'v1.page.b', '17841002', '5002', 'Clinic B', now() - interval '30 days', now() - interval '1 day'),
  ('00000000-0000-4000-8000-0000000000d4', '7004', 'v1.page.d', '17841004', '5004', 'Clinic D', now() - interval '30 days', now() - interval '1 day');
insert into public.doctor_instagram (doctor_id, instagram_access_token, instagram_business_account_id, instagram_user_id,
  instagram_username, token_kind, token_expires_at, token_refreshed_at, updated_at)
values ('00000000-0000-4000-8000-0000000000e5', 'v1.ig.old', '17841005', '9005', 'clinic_e', 'instagram_user',
  now() + interval '20 days', now() - interval '40 days', now() - interval '40 days');

-- The catalogue code (DETAIL) an RPC raises, or null when it does not raise.
create function pg_temp.detail_of(statement text) returns text
language plpgsql as $$
declare
  found_detail text;
begin
  execute statement;
  return null;
exception when others then
  get stacked diagnostics found_detail = pg_exception_detail;
  return found_detail;
end;
$$;
-- A Facebook Login pending connection offering one Page.
create procedure pg_temp.page_pending(h text, doctor uuid, page text, account text)
language sql as $$
  insert into private.pending_connections (token_hash, doctor_id, pages, expires_at, facebook_user_id, granted_scopes)
  values (repeat(h, 64), doctor, jsonb_build_array(jsonb_build_object('page_id', page, 'page_name', 'Clinic ' || page,
    'instagram_account_id', account, 'access_token', 'v1.page.' || h)), now() + interval '10 minutes', '5003',
    array['pages_show_list']);
$$;
-- An Instagram Login pending connection, as create_instagram_pending_connection() stores it.
create function pg_temp.ig_pending(h text, doctor uuid, account text, ig_user text) returns timestamptz
language sql as $$
  select public.create_instagram_pending_connection(repeat(h, 64), doctor, jsonb_build_object(
    'instagram_account_id', account, 'instagram_user_id', ig_user, 'instagram_username', 'clinic_' || h,
    'access_token', 'v1.ig.' || h, 'token_expires_at', '2027-02-01T00:00:00Z'),
    array['instagram_business_basic', 'instagram_business_manage_messages']);
$$;

-- The new functions: service_role only, SECURITY DEFINER with an empty search_path. ------------------
select ok(
  (select bool_and(not has_function_privilege('anon', p.oid, 'execute')
                   and not has_function_privilege('authenticated', p.oid, 'execute')
                   and has_function_privilege('service_role', p.oid, 'execute')
                   and p.prosecdef and p.proconfig @> array['search_path=""'])
   from pg_proc as p
   where p.oid in ('public.create_instagram_pending_connection(text, uuid, jsonb, text[])'::regprocedure,
                   'public.subscription_target(text, text)'::regprocedure,
                   'public.forget_instagram_user(text, text, timestamptz, text)'::regprocedure,
                   'public.request_instagram_data_deletion(text, text, text, timestamptz, text)'::regprocedure,
                   'public.record_instagram_token_refresh(uuid, uuid, text, text, timestamptz)'::regprocedure,
                   'public.store_instagram_events(text, jsonb, text)'::regprocedure)),
  'the Instagram Login functions are service_role only, SECURITY DEFINER, search_path empty'
);
select hasnt_function('public', 'store_instagram_events', array['text', 'jsonb'], 'the two-argument store is replaced');

-- The model's rules. --------------------------------------------------------------------------------
select throws_ok(
  $$insert into public.doctor_instagram (doctor_id, instagram_access_token, instagram_business_account_id)
    values ('00000000-0000-4000-8000-0000000000c3', 'v1.x', '17849999')$$,
  '23514', null, 'a Page link without a Page is refused'
);
select throws_ok(
  $$insert into public.doctor_instagram (doctor_id, instagram_page_id, instagram_access_token, instagram_business_account_id, token_kind, instagram_user_id)
    values ('00000000-0000-4000-8000-0000000000c3', '7999', 'v1.x', '17849999', 'instagram_user', '9999')$$,
  '23514', null, 'an Instagram Login link with a Page is refused'
);
select throws_ok(
  $$insert into public.doctor_instagram (doctor_id, instagram_access_token, instagram_business_account_id, token_kind, instagram_user_id, facebook_user_id)
    values ('00000000-0000-4000-8000-0000000000c3', 'v1.x', '17849999', 'instagram_user', '9999', '5999')$$,
  '23514', null, 'an Instagram Login link has no Facebook user'
);
select throws_ok(
  $$update public.doctor_instagram set instagram_user_id = '9999' where doctor_id = '00000000-0000-4000-8000-0000000000b2'$$,
  '23514', null, 'a Page link has no Instagram user'
);
select throws_ok(
  $$update public.doctor_instagram set status = 'needs_reconnect', status_reason = 'instagram_token_invalid'
    where doctor_id = '00000000-0000-4000-8000-0000000000b2'$$,
  '23514', null, 'a Page link never takes an instagram_* reason'
);
select throws_ok(
  $$update public.doctor_instagram set status = 'needs_reconnect', status_reason = 'page_role_lost'
    where doctor_id = '00000000-0000-4000-8000-0000000000e5'$$,
  '23514', null, 'an Instagram Login link never takes a Page reason'
);
select results_eq(
  $$select code from public.instagram_link_status_reasons where starts_with(code, 'instagram_') order by code$$,
  $$values ('instagram_permissions_missing'), ('instagram_refresh_failed'), ('instagram_subscription_lost'),
           ('instagram_token_expired'), ('instagram_token_invalid')$$,
  'the view holds a sentence for each Instagram reason'
);
select ok(
  (select bool_and(doctor_message ~ 'Instagram' and doctor_message !~ 'Page|Facebook')
   from public.instagram_link_status_reasons where starts_with(code, 'instagram_')),
  'the Instagram reasons talk about Instagram, never a Page or Facebook'
);

-- What a doctor may read. ---------------------------------------------------------------------------
select ok(
  has_column_privilege('authenticated', 'public.doctor_instagram', 'instagram_user_id', 'select')
  and has_column_privilege('authenticated', 'public.doctor_instagram', 'token_refreshed_at', 'select')
  and not has_column_privilege('authenticated', 'public.doctor_instagram', 'instagram_access_token', 'select')
  and not has_column_privilege('anon', 'public.doctor_instagram', 'instagram_user_id', 'select'),
  'doctors may read instagram_user_id and token_refreshed_at, never the token; anon nothing'
);
set local role authenticated;
set local "request.jwt.claims" to '{"sub":"00000000-0000-4000-8000-0000000000e5","role":"authenticated"}';
select results_eq(
  $$select instagram_user_id, token_kind, instagram_page_id, token_refreshed_at is not null from public.doctor_instagram$$,
  $$values ('9005', 'instagram_user', null::text, true)$$,
  'a doctor reads their own Instagram Login link (and no other)'
);
select throws_ok(
  $$select instagram_access_token from public.doctor_instagram$$, '42501', null, 'but not its token'
);
reset role;
set local "request.jwt.claims" to '';

-- The pending connection. ---------------------------------------------------------------------------
set local role service_role;
select throws_ok(
  $$select public.create_instagram_pending_connection(repeat('9', 64), '00000000-0000-4000-8000-0000000000a1',
    '{"instagram_account_id": "17841001", "access_token": "v1.x"}', null)$$,
  '22023', null, 'without the Instagram user id: refused'
);
select throws_ok(
  $$select public.create_instagram_pending_connection(repeat('9', 64), '00000000-0000-4000-8000-0000000000a1',
    '{"instagram_account_id": "17841001", "instagram_user_id": "9001", "access_token": "raw-meta-token"}', null)$$,
  '22023', null, 'a token that is not ciphertext: refused'
);
select throws_ok(
  $$select public.create_instagram_pending_connection(repeat('9', 64), '00000000-0000-4000-8000-0000000000a1',
    '{"instagram_account_id": "17841001", "instagram_user_id": "9001", "access_token": "v1.x", "token_expires_at": "soon"}', null)$$,
  '22023', null, 'an expiry that is not a time: refused'
);
select is(
  pg_temp.ig_pending('a', '00000000-0000-4000-8000-0000000000a1', '17841001', '9001'), now() + interval '10 minutes',
  'an Instagram pending connection lives ten minutes'
);
reset role;
select results_eq(
  $$select token_kind, instagram_user_id, facebook_user_id, pages
    from private.pending_connections where token_hash = repeat('a', 64)$$,
  $$values ('instagram_user', '9001', null::text, '[{"instagram_account_id": "17841001", "instagram_user_id": "9001",
    "instagram_username": "clinic_a", "access_token": "v1.ig.a", "token_expires_at": "2027-02-01T00:00:00+00:00"}]'::jsonb)$$,
  'it holds the one account (no Page) and the Instagram user, no Facebook user'
);

-- Open and link. ------------------------------------------------------------------------------------
set local role service_role;
select is(
  public.open_pending_connection('00000000-0000-4000-8000-0000000000a1', repeat('a', 64)),
  jsonb_build_object('outcome', 'ready', 'token_kind', 'instagram_user', 'page', jsonb_build_object(
    'instagram_account_id', '17841001', 'instagram_user_id', '9001', 'instagram_username', 'clinic_a',
    'access_token', 'v1.ig.a', 'token_expires_at', '2027-02-01T00:00:00+00:00')),
  'open: ready with the account, never a choice, nothing to leave'
);
select is(
  pg_temp.detail_of($$select public.open_pending_connection('00000000-0000-4000-8000-0000000000a1', repeat('a', 64), '4001')$$),
  'page_not_found', 'a Page named for an Instagram connection: page_not_found'
);
select is(
  public.link_pending_connection('00000000-0000-4000-8000-0000000000a1', repeat('a', 64), null, 'corr-ig-1')
    - 'connected_at' - 'granted_scopes',
  '{"doctor_id": "00000000-0000-4000-8000-0000000000a1", "token_kind": "instagram_user", "instagram_page_id": null,
    "instagram_username": "clinic_a", "page_name": null, "instagram_business_account_id": "17841001",
    "instagram_user_id": "9001", "facebook_user_id": null, "token_expires_at": "2027-02-01T00:00:00+00:00",
    "status": "active", "previous_page_id": null, "previous_instagram_account_id": null, "previous_token_kind": null}'::jsonb,
  'link: the Instagram account, no Page, no Facebook user'
);
select results_eq(
  $$select token_kind, instagram_page_id, instagram_user_id, facebook_user_id, instagram_access_token, token_expires_at,
           token_refreshed_at = now(), granted_scopes
    from public.doctor_instagram where doctor_id = '00000000-0000-4000-8000-0000000000a1'$$,
  $$values ('instagram_user', null::text, '9001', null::text, 'v1.ig.a', '2027-02-01T00:00:00Z'::timestamptz, true,
            array['instagram_business_basic', 'instagram_business_manage_messages'])$$,
  'the row: its kind, the Instagram user, the token''s expiry, obtained now'
);
select isnt(public.subscription_target('instagram_user', '17841001')->'holder', 'null'::jsonb, 'the account''s Instagram subscription is held');
select is(public.subscription_target('page', '17841001')->'holder', 'null'::jsonb, 'no Page subscription by that id');
select is(public.subscription_target('instagram_user', '17841002')->'holder', 'null'::jsonb, 'B''s Page link holds the Page''s subscription, not the account''s');
reset role;
select results_eq(
  $$select action, metadata from private.audit_log where resource_id = '00000000-0000-4000-8000-0000000000a1'$$,
  $$values ('instagram.connected', '{"token_kind": "instagram_user", "instagram_username": "clinic_a",
    "instagram_business_account_id": "17841001"}'::jsonb)$$,
  'audited as connected, with its kind and never the Instagram user id or the token'
);

-- 409 both ways. ------------------------------------------------------------------------------------
-- C through Instagram Login for the account B holds through its Page.
set local role service_role;
select ok(pg_temp.ig_pending('c', '00000000-0000-4000-8000-0000000000c3', '17841002', '9002') is not null, 'C signs in with B''s account');
select is(
  pg_temp.detail_of($$select public.open_pending_connection('00000000-0000-4000-8000-0000000000c3', repeat('c', 64))$$),
  'account_already_linked', 'an account held through a Page: open refuses it (account_already_linked)'
);
select throws_ok(
  $$select public.link_pending_connection('00000000-0000-4000-8000-0000000000c3', repeat('c', 64), null)$$,
  'PT409', 'The Instagram account @clinic_c (17841002) is already linked to another doctor. They must disconnect it first, or sign in with another Instagram account.',
  'and so does link, naming the account and what to do'
);
select is(
  pg_temp.detail_of($$select public.link_pending_connection('00000000-0000-4000-8000-0000000000c3', repeat('c', 64), null)$$),
  'account_already_linked', 'with DETAIL account_already_linked'
);
-- C through a Page whose account A holds through Instagram Login.
reset role;
call pg_temp.page_pending('d', '00000000-0000-4000-8000-0000000000c3', '7003', '17841001');
set local role service_role;
select is(
  public.open_pending_connection('00000000-0000-4000-8000-0000000000c3', repeat('d', 64)),
  jsonb_build_object('outcome', 'choose', 'expires_at', now() + interval '10 minutes',
    'pages', jsonb_build_array(jsonb_build_object('page_id', '7003', 'page_name', 'Clinic 7003', 'taken', true))),
  'the picker marks a Page taken when another doctor holds its account through Instagram Login'
);
select is(
  pg_temp.detail_of($$select public.open_pending_connection('00000000-0000-4000-8000-0000000000c3', repeat('d', 64), '7003')$$),
  'page_already_linked', 'choosing it anyway: page_already_linked'
);
select is(
  pg_temp.detail_of($$select public.link_pending_connection('00000000-0000-4000-8000-0000000000c3', repeat('d', 64), '7003')$$),
  'page_already_linked', 'and link refuses it too (page_already_linked)'
);
reset role;
select ok(
  (select used_at is null and pages <> '[]' from private.pending_connections where token_hash = repeat('d', 64)),
  'the refused link leaves the pending connection as it was'
);
set local role service_role;

-- Switching path: B moves its account from its Page to Instagram Login. ------------------------------
select ok(pg_temp.ig_pending('b', '00000000-0000-4000-8000-0000000000b2', '17841002', '9002') is not null, 'B signs in with Instagram');
select is(
  public.open_pending_connection('00000000-0000-4000-8000-0000000000b2', repeat('b', 64)) -> 'leaving',
  '{"token_kind": "page", "page_id": "7002", "instagram_account_id": "17841002", "access_token": "v1.page.b"}'::jsonb,
  'the same account through the other path: leaving names the old Page link, to unsubscribe'
);
select is(
  public.link_pending_connection('00000000-0000-4000-8000-0000000000b2', repeat('b', 64), null)
    -> 'previous_token_kind' #>> '{}',
  'page', 'link answers the kind it replaced'
);
reset role;
select results_eq(
  $$select count(*)::int, min(token_kind), min(instagram_page_id), min(facebook_user_id), min(page_name),
           min(instagram_user_id), bool_and(connected_at = now())
    from public.doctor_instagram where doctor_id = '00000000-0000-4000-8000-0000000000b2'$$,
  $$values (1, 'instagram_user', null::text, null::text, null::text, '9002', true)$$,
  'one link, now through Instagram Login: no Page, no Facebook user, connected now'
);
select is(
  (select action from private.audit_log where resource_id = '00000000-0000-4000-8000-0000000000b2' order by id desc limit 1),
  'instagram.updated', 'a switch of path is an update, not a reconnect'
);
select is(public.subscription_target('page', '7002')->'holder', 'null'::jsonb, 'the old Page is free');

-- Reconnect: A signs in again with the same account. ------------------------------------------------
update public.doctor_instagram set connected_at = now() - interval '10 days', status = 'needs_reconnect',
  status_reason = 'instagram_token_expired', token_refreshed_at = now() - interval '50 days'
where doctor_id = '00000000-0000-4000-8000-0000000000a1';
set local role service_role;
select ok(pg_temp.ig_pending('e', '00000000-0000-4000-8000-0000000000a1', '17841001', '9001') is not null, 'A signs in again');
select ok(
  not (public.open_pending_connection('00000000-0000-4000-8000-0000000000a1', repeat('e', 64)) ? 'leaving'),
  'the same account the same way: nothing to leave'
);
select is(
  public.link_pending_connection('00000000-0000-4000-8000-0000000000a1', repeat('e', 64), null) ->> 'previous_token_kind',
  'instagram_user', 'linked again'
);
reset role;
select results_eq(
  $$select status, status_reason, connected_at = now() - interval '10 days', token_refreshed_at = now(), instagram_access_token
    from public.doctor_instagram where doctor_id = '00000000-0000-4000-8000-0000000000a1'$$,
  $$values ('active', null::text, true, true, 'v1.ig.e')$$,
  'a reconnect: active again, connected_at kept, the fresh token obtained now'
);
select is(
  (select action from private.audit_log where resource_id = '00000000-0000-4000-8000-0000000000a1' order by id desc limit 1),
  'instagram.reconnected', 'audited as instagram.reconnected'
);

-- Webhooks, only under the app of the link's path. --------------------------------------------------
set local role service_role;
select is(
  public.store_instagram_events('instagram', $$[
    {"id": "17841001", "time": 1764000000, "messaging": [{"sender": {"id": "555"}, "recipient": {"id": "17841001"},
      "timestamp": 1764000000000, "message": {"mid": "mid-ig-1", "text": "hello"}}]}
  ]$$, 'instagram'),
  '{"stored": 1, "duplicates": 0, "unknown_account_events": 0, "wrong_app_events": 0, "unsends": 0}'::jsonb,
  'an Instagram Login account''s event under the Instagram app: stored'
);
select is(
  public.store_instagram_events('instagram', $$[
    {"id": "17841001", "time": 1764000000, "messaging": [{"sender": {"id": "555"}, "recipient": {"id": "17841001"},
      "timestamp": 1764000000000, "message": {"mid": "mid-ig-2", "text": "hello"}}]}
  ]$$),
  '{"stored": 0, "duplicates": 0, "unknown_account_events": 0, "wrong_app_events": 1, "unsends": 0}'::jsonb,
  'the same account under the Facebook app (the default): refused, counted in wrong_app_events'
);
select is(
  public.store_instagram_events('instagram', $$[
    {"id": "17841004", "time": 1764000000, "messaging": [{"sender": {"id": "555"}, "recipient": {"id": "17841004"},
      "timestamp": 1764000000000, "message": {"mid": "mid-page-1", "text": "hello"}}]}
  ]$$, 'instagram'),
  '{"stored": 0, "duplicates": 0, "unknown_account_events": 0, "wrong_app_events": 1, "unsends": 0}'::jsonb,
  'a Page link''s account under the Instagram app: refused'
);
select is(
  public.store_instagram_events('instagram', $$[
    {"id": "17841004", "time": 1764000000, "messaging": [{"sender": {"id": "555"}, "recipient": {"id": "17841004"},
      "timestamp": 1764000000000, "message": {"mid": "mid-page-1", "text": "hello"}}]}
  ]$$, 'facebook'),
  '{"stored": 1, "duplicates": 0, "unknown_account_events": 0, "wrong_app_events": 0, "unsends": 0}'::jsonb,
  'and stored under the Facebook app'
);
select throws_ok(
  $$select public.store_instagram_events('page', '[]', 'instagram')$$, '22023', null,
  'the Instagram app delivers the instagram object only'
);
select throws_ok(
  $$select public.store_instagram_events('instagram', '[]', 'whatsapp')$$, '22023', null, 'an unknown app: refused'
);
select results_eq(
  $$select account_id, instagram_user_id, facebook_user_id from public.instagram_events order by message_id$$,
  $$values ('17841001', '9001', null::text), ('17841004', null::text, '5004')$$,
  'each event keeps the user of the link it came through: Instagram or Facebook'
);

-- Maintenance: the lease answer and the refresh. ----------------------------------------------------
select ok(
  (select bool_and(link ? 'token_expires_at' and link ? 'token_refreshed_at')
   from jsonb_array_elements(public.lease_instagram_links('00000000-0000-4000-8000-00000000aaaa', 50, 300)) as link),
  'the lease answers each token''s expiry and when it was obtained'
);
select is(
  public.record_instagram_token_refresh('00000000-0000-4000-8000-0000000000e5', '00000000-0000-4000-8000-00000000bbbb',
    'v1.ig.old', 'v1.ig.new', now() + interval '60 days'),
  'stale', 'under another lease: stale'
);
select is(
  public.record_instagram_token_refresh('00000000-0000-4000-8000-0000000000e5', '00000000-0000-4000-8000-00000000aaaa',
    'v1.ig.other', 'v1.ig.new', now() + interval '60 days'),
  'stale', 'from a token the link no longer holds: stale'
);
select throws_ok(
  $$select public.record_instagram_token_refresh('00000000-0000-4000-8000-0000000000e5', '00000000-0000-4000-8000-00000000aaaa',
    'v1.ig.old', 'raw-token', now())$$,
  '22023', null, 'a new token that is not ciphertext is refused'
);
select throws_ok(
  $$select public.record_instagram_token_refresh('00000000-0000-4000-8000-0000000000d4', '00000000-0000-4000-8000-00000000aaaa',
    'v1.page.d', 'v1.page.new', now())$$,
  '22023', null, 'a Page token is never refreshed'
);
reset role;
update public.doctor_instagram set status = 'needs_reconnect', status_reason = 'instagram_refresh_failed',
  reconnect_by = now() + interval '20 days'
where doctor_id = '00000000-0000-4000-8000-0000000000e5';
set local role service_role;
select is(
  public.record_instagram_token_refresh('00000000-0000-4000-8000-0000000000e5', '00000000-0000-4000-8000-00000000aaaa',
    'v1.ig.old', 'v1.ig.new', '2027-03-01T00:00:00Z'),
  'refreshed', 'under its lease, from the token it holds: refreshed'
);
reset role;
select results_eq(
  $$select instagram_access_token, token_expires_at, token_refreshed_at = now(), reconnect_by,
           updated_at = now() - interval '40 days', lease_id
    from public.doctor_instagram where doctor_id = '00000000-0000-4000-8000-0000000000e5'$$,
  $$values ('v1.ig.new', '2027-03-01T00:00:00Z'::timestamptz, true, null::timestamptz, true,
            '00000000-0000-4000-8000-00000000aaaa'::uuid)$$,
  'the new token and expiry, obtained now, no deadline; updated_at unchanged (not a new grant); the lease kept'
);
select results_eq(
  $$select action, actor_role, metadata ->> 'token_rotated', metadata::text ~ 'v1\.ig'
    from private.audit_log where resource_id = '00000000-0000-4000-8000-0000000000e5' order by id desc limit 1$$,
  $$values ('instagram.token_refreshed', 'maintenance', 'true', false)$$,
  'audited as instagram.token_refreshed by maintenance, without either token'
);
set local role service_role;
select is(
  public.record_instagram_token_refresh('00000000-0000-4000-8000-0000000000e5', '00000000-0000-4000-8000-00000000aaaa',
    'v1.ig.old', 'v1.ig.newer', now() + interval '60 days'),
  'stale', 'the same refresh again (the old token is gone): stale'
);

-- Reasons of the wrong kind, through the functions. -------------------------------------------------
select throws_ok(
  $$select public.record_instagram_link_check('00000000-0000-4000-8000-0000000000e5', '00000000-0000-4000-8000-00000000aaaa',
    'v1.ig.new', 'token_invalid')$$,
  '22023', null, 'a check records no Page reason on an Instagram Login link'
);
select throws_ok(
  $$select public.record_instagram_link_check('00000000-0000-4000-8000-0000000000d4', '00000000-0000-4000-8000-00000000aaaa',
    'v1.page.d', 'instagram_token_invalid')$$,
  '22023', null, 'nor an Instagram reason on a Page link'
);
select throws_ok(
  $$select public.flag_instagram_link('00000000-0000-4000-8000-0000000000e5', 'v1.ig.new', 'token_invalid')$$,
  '22023', null, 'flag refuses a Page reason for an Instagram Login link'
);
select is(
  public.record_instagram_link_check('00000000-0000-4000-8000-0000000000e5', '00000000-0000-4000-8000-00000000aaaa',
    'v1.ig.new', 'instagram_token_invalid'),
  'status_changed', 'an Instagram reason on an Instagram Login link is recorded'
);
select ok(
  public.flag_instagram_link('00000000-0000-4000-8000-0000000000e5', 'v1.ig.new', 'instagram_refresh_failed'),
  'flag takes an Instagram reason for an Instagram Login link'
);

-- The end of a link: disconnect and Meta's Instagram callbacks. ---------------------------------------
select is(
  public.prepare_disconnect('00000000-0000-4000-8000-0000000000e5') - 'access_token',
  '{"leased": false, "leased_until": null, "leased_by": null, "token_kind": "instagram_user", "page_id": null, "instagram_account_id": "17841005",
    "facebook_user_id": null, "facebook_user_shared": false}'::jsonb,
  'prepare_disconnect: the kind and the account, no Page, no Facebook user to revoke'
);
select throws_ok(
  $$select public.forget_instagram_user('abc', 'instagram.deauthorized', now())$$, '22023', null,
  'forget_instagram_user takes a numeric id'
);
select is(
  public.forget_instagram_user('17841004', 'instagram.deauthorized', now()),
  '{"links_deleted": 0, "pending_connections_deleted": 0, "states_deleted": 0}'::jsonb,
  'a Page link is never matched, even by its account id'
);
select is(
  public.forget_instagram_user('9002', 'instagram.deauthorized', now() - interval '1 hour'),
  '{"links_deleted": 0, "pending_connections_deleted": 0, "states_deleted": 0}'::jsonb,
  'a request older than the grant touches nothing'
);
select is(
  public.forget_instagram_user('17841005', 'instagram.deauthorized', now()),
  '{"links_deleted": 1, "pending_connections_deleted": 0, "states_deleted": 0}'::jsonb,
  'by the account id (/me user_id): E''s link'
);
select ok(pg_temp.ig_pending('f', '00000000-0000-4000-8000-0000000000c3', '17841006', '9006') is not null, 'C has an Instagram pending connection');
select is(
  public.forget_instagram_user('9006', 'instagram.deauthorized', now()),
  '{"links_deleted": 0, "pending_connections_deleted": 1, "states_deleted": 0}'::jsonb,
  'by the Instagram user id (/me id): C''s pending connection'
);
select is(
  public.request_instagram_data_deletion('9001', repeat('e', 64), 'confirm-ig-0000001', now()),
  '{"confirmation_code": "confirm-ig-0000001", "status": "completed", "replay": false, "events_deleted": 1}'::jsonb,
  'data deletion for an Instagram user: the link and the events received through it'
);
select is(
  public.request_instagram_data_deletion('9001', repeat('e', 64), 'confirm-ig-0000002', now()),
  '{"confirmation_code": "confirm-ig-0000001", "status": "completed", "replay": true}'::jsonb,
  'a replay answers the first request'
);
reset role;
select results_eq(
  $$select (select count(*)::int from public.doctor_instagram where doctor_id = '00000000-0000-4000-8000-0000000000a1'),
           (select count(*)::int from public.instagram_events where account_id = '17841004'),
           (select count(*)::int from public.doctor_instagram where doctor_id = '00000000-0000-4000-8000-0000000000d4')$$,
  $$values (0, 1, 1)$$,
  'A''s link is gone; D''s Page link and its event stay'
);
select results_eq(
  $$select action, actor_role, metadata::text ~ '9001|9005' from private.audit_log
    where resource_id in ('00000000-0000-4000-8000-0000000000a1', '00000000-0000-4000-8000-0000000000e5')
      and actor_role = 'meta' order by id$$,
  $$values ('instagram.deauthorized', 'meta', false), ('instagram.deleted_by_meta', 'meta', false),
           ('instagram.deleted_by_meta', 'meta', false)$$,
  'each removal is audited with actor meta, never naming the Instagram user'
);

select * from finish();
rollback;

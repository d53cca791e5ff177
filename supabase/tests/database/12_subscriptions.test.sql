-- Meta's subscriptions as the database decides them (12_subscriptions.sql): each change of who holds a
-- Page's or an Instagram account's subscription bumps its version (whoever makes it, a cascade from
-- auth.users included); a new token for the same subscription does not; subscription_target answers the
-- version and the holder; a disconnect takes the maintenance lease and records a deferred revoke; only
-- service_role reaches any of it.
begin;
set local client_min_messages to warning;
create extension if not exists pgtap;
select plan(42);

insert into auth.users (id) values
  ('00000000-0000-4000-8000-00000000c001'), ('00000000-0000-4000-8000-00000000c002');
create function pg_temp.version(kind text, object text) returns bigint language sql as $$
  select (public.subscription_target(kind, object)->>'version')::bigint;
$$;

select is(pg_temp.version('page', '7001'), 0::bigint, 'a Page nobody ever held: version 0');
select is(public.subscription_target('page', '7001')->'holder', 'null'::jsonb, '... and no holder');

insert into public.doctor_instagram (doctor_id, instagram_page_id, instagram_access_token, instagram_business_account_id, facebook_user_id)
values ('00000000-0000-4000-8000-00000000c001', '7001', 'v1.cipher-one', '178417001', '9001');
select is(pg_temp.version('page', '7001'), 1::bigint, 'a link bumps its Page');
select is(
  public.subscription_target('page', '7001')->'holder',
  '{"doctor_id": "00000000-0000-4000-8000-00000000c001", "access_token": "v1.cipher-one"}'::jsonb,
  'the holder and its encrypted token'
);
select is(
  public.subscription_target('instagram_user', '178417001')->'holder', 'null'::jsonb,
  'a Page link holds no Instagram Login subscription of its account'
);

update public.doctor_instagram set instagram_access_token = 'v1.cipher-two', checked_at = now()
where doctor_id = '00000000-0000-4000-8000-00000000c001';
select is(pg_temp.version('page', '7001'), 1::bigint, 'a new token for the same Page, or a check: no bump');

-- A move to the Instagram path: the Page is left, the account taken.
update public.doctor_instagram
set token_kind = 'instagram_user', instagram_page_id = null, facebook_user_id = null, instagram_user_id = '5001'
where doctor_id = '00000000-0000-4000-8000-00000000c001';
select is(pg_temp.version('page', '7001'), 2::bigint, 'a move bumps the Page left');
select is(pg_temp.version('instagram_user', '178417001'), 1::bigint, '... and the account taken');
select is(
  public.subscription_target('instagram_user', '178417001')->'holder'->>'doctor_id',
  '00000000-0000-4000-8000-00000000c001', 'the account''s holder'
);

-- Whoever deletes: the cascade from auth.users bumps too.
delete from auth.users where id = '00000000-0000-4000-8000-00000000c001';
select is(pg_temp.version('instagram_user', '178417001'), 2::bigint, 'a cascade from auth.users bumps');
select is(public.subscription_target('instagram_user', '178417001')->'holder', 'null'::jsonb, '... and nobody holds it');

-- prepare_disconnect: the link holds nothing any more (a bump); the run's lease stays the run's.
insert into public.doctor_instagram (doctor_id, instagram_page_id, instagram_access_token, instagram_business_account_id, facebook_user_id, lease_id, lease_until)
values ('00000000-0000-4000-8000-00000000c002', '7002', 'v1.cipher-three', '178417002', '9002',
  '00000000-0000-4000-8000-0000000000aa', now() + interval '5 minutes');
select is(
  public.prepare_disconnect('00000000-0000-4000-8000-00000000c002') - 'access_token' - 'leased_until',
  '{"leased": true, "leased_by": "00000000-0000-4000-8000-0000000000aa", "token_kind": "page", "page_id": "7002",
    "instagram_account_id": "178417002", "facebook_user_id": "9002", "facebook_user_shared": false}'::jsonb,
  'a run held the link: leased, by that run''s lease'
);
select is(public.subscription_target('page', '7002')->'holder', 'null'::jsonb, 'a link being disconnected holds nothing');
select is(pg_temp.version('page', '7002'), 2::bigint, '... a holder change: the version moved');
select is(
  public.record_instagram_link_check('00000000-0000-4000-8000-00000000c002', '00000000-0000-4000-8000-0000000000aa',
    'v1.cipher-three', null),
  'stale', 'the run''s outcome is dropped'
);
update public.doctor_instagram set lease_id = '00000000-0000-4000-8000-0000000000aa', lease_until = now() + interval '5 minutes'
where doctor_id = '00000000-0000-4000-8000-00000000c002';
select is(
  public.prepare_disconnect('00000000-0000-4000-8000-00000000c002')->>'leased_by', '00000000-0000-4000-8000-0000000000aa',
  'a second click sees the same run''s lease: it defers its revoke too'
);
update public.doctor_instagram set lease_id = null, lease_until = null
where doctor_id = '00000000-0000-4000-8000-00000000c002';
select is(
  public.lease_instagram_links(gen_random_uuid(), 50, 60), '[]'::jsonb,
  'no run leases a link being disconnected'
);
select throws_ok(
  $$select public.prepare_disconnect('00000000-0000-4000-8000-00000000c002', 5)$$,
  'PT400', null, 'a mark of less than 10 seconds is refused'
);

-- A revoke left to maintenance: not before the run's lease ends, claimed for an hour, done when Meta is.
select lives_ok(
  $$select public.defer_revoke('9002', now() + interval '5 minutes')$$, 'the revoke is left to maintenance'
);
select is(public.take_pending_revokes(), '{}'::text[], 'not before the run''s lease ends');
update private.pending_revokes set not_before = now() - interval '1 second';
select is(public.take_pending_revokes(), array['9002'], 'then taken: the link being disconnected uses nobody');
select is(public.take_pending_revokes(), '{}'::text[], '... and claimed for an hour');
update private.pending_revokes set not_before = now() - interval '1 second';
select is(public.take_pending_revokes(), array['9002'], 'taken again when Meta did not confirm');
select lives_ok($$select public.complete_pending_revoke('9002')$$, 'Meta confirmed');
-- The run that held the link revokes at its own end; another run waits for the date.
select lives_ok(
  $$select public.defer_revoke('9003', now() + interval '5 minutes', '00000000-0000-4000-8000-0000000000bb')$$,
  'a revoke left to the run holding lease bb'
);
select is(public.take_pending_revokes('00000000-0000-4000-8000-0000000000cc'), '{}'::text[], 'not another run''s');
select is(public.take_pending_revokes('00000000-0000-4000-8000-0000000000bb'), array['9003'], 'that run''s, at its end');
select lives_ok($$select public.complete_pending_revoke('9003')$$, 'and done');
update private.pending_revokes set not_before = now() - interval '1 second';
select is(public.take_pending_revokes(), '{}'::text[], 'nothing left');
update public.doctor_instagram set disconnecting_until = null where doctor_id = '00000000-0000-4000-8000-00000000c002';
select lives_ok($$select public.defer_revoke('9002', now() - interval '1 second')$$, 'a revoke for a user in use');
select is(public.take_pending_revokes(), '{}'::text[], 'is dropped: another link uses that user');
select is((select count(*)::int from private.pending_revokes), 0, '... for good');

-- A disconnect that died: its mark runs out, and the next run's lease clears it (a holder change).
update public.doctor_instagram set disconnecting_until = now() - interval '1 second', checked_at = now() + interval '1 day'
where doctor_id = '00000000-0000-4000-8000-00000000c002';
select is(public.subscription_target('page', '7002')->'holder', 'null'::jsonb, 'a mark that ran out holds nothing yet');
select is(
  (public.lease_instagram_links(gen_random_uuid(), 1, 60) -> 0 ->> 'doctor_id'), '00000000-0000-4000-8000-00000000c002',
  'the next run clears it and takes the link'
);
select isnt(public.subscription_target('page', '7002')->'holder', 'null'::jsonb, 'which holds its Page again');
select cmp_ok(pg_temp.version('page', '7002'), '>', 3::bigint, '... a holder change: the version moved');

-- A revoke whose user a waiting connection uses waits for that connection to expire.
insert into private.pending_connections (token_hash, doctor_id, facebook_user_id, pages, expires_at)
select repeat('ab', 32), '00000000-0000-4000-8000-00000000c002', '9004', '[]'::jsonb,
  now() + interval '10 minutes';
select lives_ok($$select public.defer_revoke('9004', now() - interval '1 second')$$, 'a revoke for a user a connection waits with');
select is(public.take_pending_revokes(), '{}'::text[], 'not while the connection may still be finished');
select cmp_ok(
  (select not_before from private.pending_revokes where facebook_user_id = '9004'), '>', now(),
  '... kept, until the connection expires'
);

-- Closed to the API roles: only service_role runs these (under either default-grant setting).
select is_empty(
  $$select p.oid::regprocedure::text from pg_proc as p
    where p.oid in ('public.subscription_target(text, text)'::regprocedure,
                    'public.defer_revoke(text, timestamptz, uuid)'::regprocedure,
                    'public.take_pending_revokes(uuid)'::regprocedure,
                    'public.complete_pending_revoke(text)'::regprocedure)
      and (has_function_privilege('anon', p.oid, 'execute') or has_function_privilege('authenticated', p.oid, 'execute')
           or not has_function_privilege('service_role', p.oid, 'execute')
           or not p.prosecdef or not p.proconfig @> array['search_path=""'])$$,
  'the subscription and revoke RPCs: service_role only, SECURITY DEFINER, search_path empty'
);
select ok(
  not has_table_privilege('anon', 'private.subscription_versions', 'select')
  and not has_table_privilege('authenticated', 'private.pending_revokes', 'select'),
  'the private tables are nobody''s but the functions'''
);
set local role authenticated;
select throws_ok(
  $$select public.subscription_target('page', '7001')$$,
  '42501', null, 'a doctor cannot read a subscription''s holder'
);
reset role;

select * from finish();
rollback;

-- Link health: the status the doctor reads, the maintenance lease and its compare-and-swap writes, what
-- is audited (status changes, reconnects, re-encryption) and what is not (checks, leases), and that
-- none of it counts as a renewal of the grant (updated_at).
begin;
set local client_min_messages to warning;
create extension if not exists pgtap;
select plan(43);

insert into auth.users (id) values
  ('00000000-0000-4000-8000-00000000f001'), ('00000000-0000-4000-8000-00000000f002'),
  ('00000000-0000-4000-8000-00000000f003');
create procedure pg_temp.link(doctor text, page text, token text)
language sql as $$
  insert into public.doctor_instagram (doctor_id, instagram_page_id, instagram_access_token, instagram_business_account_id, updated_at)
  values (doctor::uuid, page, token, '1785' || page, now() - interval '1 day');
$$;
call pg_temp.link('00000000-0000-4000-8000-00000000f001', '6001', 'v1.cipher-one');
call pg_temp.link('00000000-0000-4000-8000-00000000f002', '6002', 'v2.k1.iv.cipher-two');
call pg_temp.link('00000000-0000-4000-8000-00000000f003', '6003', 'v2.k2.iv.cipher-three');
update public.doctor_instagram set checked_at = now() - interval '1 hour' where instagram_page_id = '6002';
update public.doctor_instagram set checked_at = now() - interval '2 hours' where instagram_page_id = '6003';

-- The model and the status, as a new link starts.
select results_eq(
  $$select token_kind, status, status_reason, checked_at, reconnect_by, token_expires_at
    from public.doctor_instagram where instagram_page_id = '6001'$$,
  $$values ('page', 'active', null::text, null::timestamptz, null::timestamptz, null::timestamptz)$$,
  'a link starts as an active Page token, not yet checked'
);
select throws_ok(
  $$update public.doctor_instagram set status = 'needs_reconnect' where instagram_page_id = '6001'$$,
  '23514', null, 'needs_reconnect without a reason is refused'
);
select throws_ok(
  $$update public.doctor_instagram set status = 'needs_reconnect', status_reason = 'made_up' where instagram_page_id = '6001'$$,
  '23514', null, 'an unknown reason is refused'
);
select throws_ok(
  $$update public.doctor_instagram set status_reason = 'token_invalid' where instagram_page_id = '6001'$$,
  '23514', null, 'an active link has no reason'
);
select set_eq(
  $$select code from public.instagram_link_status_reasons$$,
  $$select unnest(regexp_matches(pg_get_constraintdef(oid), '''([a-z_]+)''', 'g'))
    from pg_constraint where conname = 'doctor_instagram_status_reason'$$,
  'every reason the CHECK allows has a sentence for the doctor, and no other'
);
select is_empty(
  $$select code from public.instagram_link_status_reasons
    where doctor_message !~ '^[A-Z].{20,}\.$' or doctor_message !~ 'press Reconnect|Press Reconnect'
       or doctor_message ~* 'token|subcode|graph|api'$$,
  'every sentence is a sentence that says what to do, in the doctor''s words'
);

-- What the doctor reads: their own status, never the lease.
set local role authenticated;
set local "request.jwt.claims" to '{"sub":"00000000-0000-4000-8000-00000000f001","role":"authenticated"}';
select results_eq(
  $$select instagram_page_id, status from public.doctor_instagram$$,
  $$values ('6001', 'active')$$,
  'a doctor reads their own status (RLS)'
);
select throws_ok(
  $$select lease_id from public.doctor_instagram$$, '42501', null, 'a doctor cannot read the lease'
);
select isnt_empty($$select 1 from public.instagram_link_status_reasons$$, 'a doctor reads the reasons');
reset role;
set local role anon;
select throws_ok($$select 1 from public.instagram_link_status_reasons$$, '42501', null, 'anon reads no reason');
reset role;

-- Privileges: the RPCs are service_role's only.
select is_empty(
  $$select p.proname from pg_proc p
    where p.pronamespace = 'public'::regnamespace
      and p.proname in ('lease_instagram_links', 'record_instagram_link_check', 'release_instagram_links',
                        'flag_instagram_link', 'subscription_target', 'links_to_reencrypt',
                        'reencrypt_instagram_tokens', 'run_instagram_sweeps')
      and (has_function_privilege('anon', p.oid, 'execute') or has_function_privilege('authenticated', p.oid, 'execute')
           or not has_function_privilege('service_role', p.oid, 'execute'))$$,
  'only service_role may run the maintenance RPCs'
);

-- Leases: least recently checked first (never checked before all), and a second run gets the others.
set local role service_role;
set local "request.jwt.claims" to '{"role":"service_role"}';
select is(
  (select jsonb_agg(leased ->> 'page_id') from jsonb_array_elements(
    public.lease_instagram_links('00000000-0000-4000-8000-0000000000a1', 2)) as leased),
  '["6001", "6003"]'::jsonb,
  'a run leases the never-checked link first, then the least recently checked'
);
select is(
  (select jsonb_agg(leased ->> 'page_id') from jsonb_array_elements(
    public.lease_instagram_links('00000000-0000-4000-8000-0000000000a2', 50)) as leased),
  '["6002"]'::jsonb,
  'a second run at once gets only the link the first did not lease'
);
select is(
  public.lease_instagram_links('00000000-0000-4000-8000-0000000000a3', 50), '[]'::jsonb,
  'a third run gets nothing while the leases last'
);
select throws_ok(
  $$select public.lease_instagram_links('00000000-0000-4000-8000-0000000000a3', 51)$$,
  'PT400', null, 'at most 50 links per lease'
);

-- Recording: only under this run's lease and for the token it checked.
select is(
  public.record_instagram_link_check('00000000-0000-4000-8000-00000000f002', '00000000-0000-4000-8000-0000000000a1',
    'v2.k1.iv.cipher-two', 'password_changed'),
  'stale', 'another run''s lease: the outcome is dropped'
);
select is(
  public.record_instagram_link_check('00000000-0000-4000-8000-00000000f001', '00000000-0000-4000-8000-0000000000a1',
    'v1.an-older-token', 'password_changed'),
  'stale', 'a token the link no longer holds: the outcome is dropped'
);
select is(
  (select status || '/' || coalesce(lease_id::text, 'free') from public.doctor_instagram where instagram_page_id = '6001'),
  'active/free', 'a stale outcome changes nothing but ends the lease'
);
select lives_ok(
  $$select public.lease_instagram_links('00000000-0000-4000-8000-0000000000a1', 1)$$, 'the link is leased again'
);
select is(
  public.record_instagram_link_check('00000000-0000-4000-8000-00000000f001', '00000000-0000-4000-8000-0000000000a1',
    'v1.cipher-one', 'password_changed', '2027-03-01T00:00:00Z', null, 'corr-health-1'),
  'status_changed', 'a check that finds the token dead flags the link'
);
select is(
  public.record_instagram_link_check('00000000-0000-4000-8000-00000000f003', '00000000-0000-4000-8000-0000000000a1',
    'v2.k2.iv.cipher-three', null, '2027-04-01T00:00:00Z', null, 'corr-health-2'),
  'unchanged', 'a check that finds the link well changes no status'
);
reset role;
select results_eq(
  $$select status, status_reason, reconnect_by, checked_at is not null, lease_id is null, updated_at < now() - interval '1 hour'
    from public.doctor_instagram where instagram_page_id = '6001'$$,
  $$values ('needs_reconnect', 'password_changed', '2027-03-01T00:00:00Z'::timestamptz, true, true, true)$$,
  'the flag, the date Meta gave and the check are recorded, the lease ended, updated_at kept'
);
select results_eq(
  $$select action, actor_role, metadata from private.audit_log where correlation_id = 'corr-health-1'$$,
  $$values ('instagram.status_changed', 'maintenance', '{"changed": {"status": {"from": "active", "to": "needs_reconnect"},
    "status_reason": {"from": null, "to": "password_changed"}}, "token_rotated": false, "reconnect_by": "2027-03-01T00:00:00+00:00"}'::jsonb)$$,
  'a status change is audited with the reason'
);
select is_empty(
  $$select 1 from private.audit_log where correlation_id = 'corr-health-2'$$,
  'a check that changes no status is not audited'
);
select is(
  (select count(*)::int from private.audit_log where resource_id in (
    '00000000-0000-4000-8000-00000000f002', '00000000-0000-4000-8000-00000000f003') and action <> 'instagram.connected'),
  0, 'leases and checks write no audit entry'
);

-- A 190 where the token is used: flagged only while the link holds that token.
set local role service_role;
select is(
  public.flag_instagram_link('00000000-0000-4000-8000-00000000f002', 'v2.k1.iv.an-old-token', 'token_invalid'),
  false, 'a refusal of a token the link no longer holds flags nothing'
);
select is(
  public.flag_instagram_link('00000000-0000-4000-8000-00000000f002', 'v2.k1.iv.cipher-two', 'token_invalid', 'corr-flag'),
  true, 'a refusal of the token the link holds flags it'
);
reset role;
select is(
  (select action from private.audit_log where correlation_id = 'corr-flag'), 'instagram.status_changed',
  'the flag is audited'
);

-- Re-encryption: compare-and-swap, audited, not a renewal.
set local role service_role;
select is(
  (select jsonb_agg(stale ->> 'page_id' order by stale ->> 'page_id') from jsonb_array_elements(public.links_to_reencrypt('k2', 50)) as stale),
  '["6001", "6002"]'::jsonb,
  'links not under the primary key, legacy format included'
);
select is(
  public.reencrypt_instagram_tokens(jsonb_build_array(
    jsonb_build_object('doctor_id', '00000000-0000-4000-8000-00000000f001', 'from', 'v1.cipher-one', 'to', 'v2.k2.iv.new-one'),
    jsonb_build_object('doctor_id', '00000000-0000-4000-8000-00000000f002', 'from', 'v2.k1.iv.replaced', 'to', 'v2.k2.iv.new-two')
  ), 'corr-reencrypt'),
  1, 'only the token still held is replaced'
);
reset role;
select results_eq(
  $$select instagram_page_id, instagram_access_token, updated_at < now() - interval '1 hour'
    from public.doctor_instagram where instagram_page_id in ('6001', '6002') order by 1$$,
  $$values ('6001', 'v2.k2.iv.new-one', true), ('6002', 'v2.k1.iv.cipher-two', true)$$,
  're-encryption stores the new ciphertext and keeps updated_at'
);
select results_eq(
  $$select action, metadata from private.audit_log where correlation_id = 'corr-reencrypt'$$,
  $$values ('instagram.token_reencrypted', '{"changed": {}, "token_rotated": true}'::jsonb)$$,
  're-encryption is audited as such, without the token'
);

-- Reconnect: the same Page again, a fresh token, active again, audited as a reconnect.
insert into private.pending_connections (token_hash, doctor_id, pages, expires_at, facebook_user_id)
values (repeat('7', 64), '00000000-0000-4000-8000-00000000f001', jsonb_build_array(jsonb_build_object(
  'page_id', '6001', 'instagram_account_id', '17856001', 'access_token', 'v2.k2.iv.fresh')),
  now() + interval '10 minutes', '9990001');
set local role service_role;
select is(
  public.link_pending_connection('00000000-0000-4000-8000-00000000f001', repeat('7', 64), '6001', 'corr-reconnect') ->> 'status',
  'active', 'finishing with the same Page answers the link active'
);
reset role;
select results_eq(
  $$select status, status_reason, reconnect_by, checked_at, instagram_access_token
    from public.doctor_instagram where instagram_page_id = '6001'$$,
  $$values ('active', null::text, null::timestamptz, null::timestamptz, 'v2.k2.iv.fresh')$$,
  'a reconnect replaces the token and starts the health over'
);
select is(
  (select action from private.audit_log where correlation_id = 'corr-reconnect'), 'instagram.reconnected',
  'a reconnect is audited as a reconnect'
);

-- The holder of a Page a converge subscribes with (12_subscriptions.sql).
set local role service_role;
select is(
  (public.subscription_target('page', '6003')->'holder') - 'doctor_id',
  '{"access_token": "v2.k2.iv.cipher-three"}'::jsonb,
  'the Page''s holder and its token are answered'
);
select is(public.subscription_target('page', '6999')->'holder', 'null'::jsonb, 'nobody holds an unknown Page');
reset role;

-- A disconnect ends a run's lease (its outcome is then dropped) and says the link was leased.
select lives_ok(
  $$select public.lease_instagram_links('00000000-0000-4000-8000-0000000000b1', 50)$$, 'a run leases the links'
);
select is(
  public.prepare_disconnect('00000000-0000-4000-8000-00000000f003') ->> 'leased', 'true',
  'prepare_disconnect says a run held the link'
);
select is(
  public.record_instagram_link_check('00000000-0000-4000-8000-00000000f003', '00000000-0000-4000-8000-0000000000b1',
    'v2.k2.iv.cipher-three', 'token_invalid'),
  'stale', 'and that run''s outcome is dropped'
);
select is(
  public.flag_instagram_link('00000000-0000-4000-8000-00000000f002', 'v2.k1.iv.cipher-two', 'password_changed'),
  true, 'a link leased by a run is flagged'
);
select is(
  (select lease_id from public.doctor_instagram where doctor_id = '00000000-0000-4000-8000-00000000f002'), null,
  'and the flag ends the lease, so the run''s older outcome cannot overwrite it'
);

-- Sweeps: the events' retention is the run's argument.
set local role service_role;
select is(public.run_instagram_sweeps(30), '{"purged_events": 0}'::jsonb, 'a sweep answers what it purged');

select * from finish();
rollback;

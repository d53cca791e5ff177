-- Pending connections: nobody but their functions reaches them; what create_pending_connection accepts
-- and stores; the per-doctor limit; and every answer of open_pending_connection, including the refusal
-- of another doctor's session with its audit entry.
begin;
-- pgTAP is already in the extensions schema where the suite runs; the NOTICE saying so is noise.
set local client_min_messages to warning;
create extension if not exists pgtap;
select plan(30);

insert into auth.users (id) values
  ('00000000-0000-4000-8000-00000000f001'),
  ('00000000-0000-4000-8000-00000000f002'),
  ('00000000-0000-4000-8000-00000000f003');

-- Privileges -------------------------------------------------------------------------------------
select ok(
  not has_table_privilege('anon', 'private.pending_connections', 'select, insert, update, delete')
  and not has_table_privilege('authenticated', 'private.pending_connections', 'select, insert, update, delete')
  and not has_table_privilege('service_role', 'private.pending_connections', 'select, insert, update, delete'),
  'no API role, service_role included, may touch pending_connections directly'
);
select ok(
  (select bool_and(
     not has_function_privilege('anon', oid, 'execute')
     and not has_function_privilege('authenticated', oid, 'execute')
     and has_function_privilege('service_role', oid, 'execute'))
   from pg_proc
   where oid in ('public.create_pending_connection(text, uuid, jsonb, text, text[])'::regprocedure,
                 'public.open_pending_connection(uuid, text, text, text)'::regprocedure,
                 'public.link_pending_connection(uuid, text, text, text)'::regprocedure)),
  'only service_role may create, open or link a pending connection'
);
select ok(
  (select bool_and(prosecdef and proconfig = array['search_path=""'])
   from pg_proc
   where oid in ('public.create_pending_connection(text, uuid, jsonb, text, text[])'::regprocedure,
                 'public.open_pending_connection(uuid, text, text, text)'::regprocedure,
                 'public.link_pending_connection(uuid, text, text, text)'::regprocedure)),
  'each is SECURITY DEFINER with an empty search_path'
);
set local role authenticated;
set local "request.jwt.claims" to '{"sub":"00000000-0000-4000-8000-00000000f001","role":"authenticated"}';
select throws_ok(
  $$select public.open_pending_connection('00000000-0000-4000-8000-00000000f001', repeat('a', 64))$$,
  '42501', null, 'a doctor cannot open a pending connection through the API'
);
select throws_ok($$select * from private.pending_connections$$, '42501', null, 'a doctor cannot read them');
reset role;
reset "request.jwt.claims";

-- create_pending_connection ----------------------------------------------------------------------
set local role service_role;
select throws_ok(
  $$select public.create_pending_connection(repeat('a', 64), '00000000-0000-4000-8000-00000000f001', '[]', '555000111', array['pages_show_list'])$$,
  '22023', null, 'no Page: refused'
);
select throws_ok(
  $$select public.create_pending_connection(repeat('a', 64), '00000000-0000-4000-8000-00000000f001',
    '[{"page_id": "6001", "instagram_account_id": "1786", "access_token": "EAAplaintext"}]', '555000111', array['pages_show_list'])$$,
  '22023', null, 'a Page token that is not ciphertext: refused'
);
select throws_ok(
  $$select public.create_pending_connection(repeat('a', 64), '00000000-0000-4000-8000-00000000f001',
    '[{"page_id": "60x1", "instagram_account_id": "1786", "access_token": "v1.a.b"}]', '555000111', array['pages_show_list'])$$,
  '22023', null, 'a malformed Page id: refused'
);
select throws_ok(
  $$select public.create_pending_connection('short', '00000000-0000-4000-8000-00000000f001',
    '[{"page_id": "6001", "instagram_account_id": "1786", "access_token": "v1.a.b"}]', '555000111', array['pages_show_list'])$$,
  '23514', null, 'a token hash that is not a SHA-256: refused'
);
select ok(
  public.create_pending_connection(repeat('1', 64), '00000000-0000-4000-8000-00000000f001', jsonb_build_array(
    jsonb_build_object('page_id', '6001', 'page_name', repeat('N', 300), 'instagram_account_id', '17860001',
                       'instagram_username', repeat('u', 100), 'access_token', 'v1.one.page'),
    jsonb_build_object('page_id', '6002', 'page_name', '', 'instagram_account_id', '17860002',
                       'access_token', 'v1.two.page')
  ), '555000111', array['pages_show_list']) = now() + interval '10 minutes',
  'a pending connection lives ten minutes'
);
reset role;
select is(
  (select pages from private.pending_connections where token_hash = repeat('1', 64)),
  jsonb_build_array(
    jsonb_build_object('page_id', '6001', 'page_name', repeat('N', 255), 'instagram_account_id', '17860001',
                       'instagram_username', repeat('u', 64), 'access_token', 'v1.one.page'),
    jsonb_build_object('page_id', '6002', 'instagram_account_id', '17860002', 'access_token', 'v1.two.page')
  ),
  'names are cut to the columns'' lengths, empty ones dropped, order kept'
);

-- At most 10 open pending connections per doctor.
insert into private.pending_connections (token_hash, doctor_id, pages, expires_at)
select lpad(to_hex(n), 64, 'c'), '00000000-0000-4000-8000-00000000f003',
       '[{"page_id": "1", "instagram_account_id": "2", "access_token": "v1.x.y"}]', now() + (n || ' minutes')::interval
from generate_series(1, 10) as n;
set local role service_role;
select throws_ok(
  $$select public.create_pending_connection(repeat('d', 64), '00000000-0000-4000-8000-00000000f003',
    '[{"page_id": "6001", "instagram_account_id": "1786", "access_token": "v1.a.b"}]', '555000111', array['pages_show_list'])$$,
  'PT429', 'Too many connections are waiting for confirmation; wait for one to expire',
  'an 11th open pending connection is refused'
);
reset role;
update private.pending_connections set used_at = now(), pages = '[]' where token_hash = lpad(to_hex(1), 64, 'c');
set local role service_role;
select lives_ok(
  $$select public.create_pending_connection(repeat('d', 64), '00000000-0000-4000-8000-00000000f003',
    '[{"page_id": "6001", "instagram_account_id": "1786", "access_token": "v1.a.b"}]', '555000111', array['pages_show_list'])$$,
  'a used one frees a place'
);

-- open_pending_connection -----------------------------------------------------------------------
select throws_ok(
  $$select public.open_pending_connection('00000000-0000-4000-8000-00000000f001', repeat('9', 64))$$,
  'PT400', 'This connection is not known', 'an unknown token: pending_unknown'
);
select is(
  public.open_pending_connection('00000000-0000-4000-8000-00000000f001', repeat('1', 64)),
  jsonb_build_object(
    'outcome', 'choose',
    'expires_at', now() + interval '10 minutes',
    'pages', jsonb_build_array(
      jsonb_build_object('page_id', '6001', 'page_name', repeat('N', 255), 'instagram_username', repeat('u', 64)),
      jsonb_build_object('page_id', '6002')
    )
  ),
  'several Pages and none chosen: the choice, without tokens'
);
select is(
  public.open_pending_connection('00000000-0000-4000-8000-00000000f001', repeat('1', 64), '6002'),
  '{"outcome": "ready", "token_kind": "page", "page": {"page_id": "6002", "instagram_account_id": "17860002", "access_token": "v1.two.page"}}'::jsonb,
  'a chosen Page: ready, with its encrypted token for the function'
);
select throws_ok(
  $$select public.open_pending_connection('00000000-0000-4000-8000-00000000f001', repeat('1', 64), '7777')$$,
  'PT422', 'That Page is not among the Pages shared', 'a Page not offered: page_not_found'
);
select is(
  public.create_pending_connection(repeat('2', 64), '00000000-0000-4000-8000-00000000f001',
    '[{"page_id": "6003", "page_name": "Held Clinic", "instagram_account_id": "17860003", "access_token": "v1.held.page"}]', '555000111', array['pages_show_list'])
  > now(), true, 'a pending connection for a Page someone else holds'
);
reset role;
insert into public.doctor_instagram (doctor_id, instagram_page_id, instagram_access_token, instagram_business_account_id)
values ('00000000-0000-4000-8000-00000000f002', '6003', 'v1.theirs.page', '178416003');
set local role service_role;
select is(
  public.open_pending_connection('00000000-0000-4000-8000-00000000f001', repeat('2', 64)) #>> '{pages,0,taken}',
  'true',
  'a single Page another doctor holds is offered as taken, not linked into a conflict'
);
select throws_ok(
  $$select public.open_pending_connection('00000000-0000-4000-8000-00000000f001', repeat('2', 64), '6003')$$,
  'PT409', 'The Facebook Page "Held Clinic" (6003) is already linked to another doctor. They must disconnect it first, or choose another Page.',
  'chosen anyway, it is refused before anything is done with it'
);
reset role;

-- Expired.
insert into private.pending_connections (token_hash, doctor_id, pages, created_at, expires_at)
values (repeat('3', 64), '00000000-0000-4000-8000-00000000f001',
        '[{"page_id": "6004", "instagram_account_id": "1", "access_token": "v1.x.y"}]',
        now() - interval '20 minutes', now() - interval '10 minutes');
set local role service_role;
select throws_ok(
  $$select public.open_pending_connection('00000000-0000-4000-8000-00000000f001', repeat('3', 64))$$,
  'PT400', 'This connection expired', 'an expired one: pending_expired'
);

-- Another doctor's session: destroyed and audited, and that is an answer, not an error (it commits).
select is(
  public.open_pending_connection('00000000-0000-4000-8000-00000000f002', repeat('1', 64), null, 'corr-refused-1'),
  '{"outcome": "session_mismatch"}'::jsonb,
  'another doctor''s session: session_mismatch'
);
reset role;
select is_empty(
  $$select 1 from private.pending_connections where token_hash = repeat('1', 64)$$,
  'the pending connection is destroyed, its Page tokens with it'
);
select results_eq(
  $$select actor_id::text, action, resource_type, resource_id, correlation_id, metadata
    from private.audit_log where correlation_id = 'corr-refused-1'$$,
  $$values ('00000000-0000-4000-8000-00000000f002', 'instagram.link_refused', 'doctor_instagram',
            '00000000-0000-4000-8000-00000000f001', 'corr-refused-1',
            '{"reason": "session_mismatch", "pending_doctor_id": "00000000-0000-4000-8000-00000000f001",
              "offered_page_ids": ["6001", "6002"]}'::jsonb)$$,
  'the refusal is audited: the signed-in doctor as actor, the pending doctor in metadata, no token'
);
select is_empty(
  $$select 1 from private.audit_log where metadata::text like '%v1.%'$$,
  'no audit entry holds a token, encrypted or not'
);

-- Long-expired ones are swept when a new one is stored.
insert into private.pending_connections (token_hash, doctor_id, pages, created_at, expires_at)
select lpad(to_hex(n), 64, 'e'), '00000000-0000-4000-8000-00000000f002', '[]',
       now() - interval '3 hours', now() - interval '2 hours 55 minutes'
from generate_series(1, 60) as n;
set local role service_role;
select lives_ok(
  $$select public.create_pending_connection(repeat('4', 64), '00000000-0000-4000-8000-00000000f002',
    '[{"page_id": "6005", "instagram_account_id": "1786", "access_token": "v1.a.b"}]', '555000111', array['pages_show_list'])$$,
  'a new pending connection is stored'
);
reset role;
select is(
  (select count(*)::int from private.pending_connections where expires_at < now() - interval '1 hour'),
  10, 'each new one deletes at most 50 long-expired ones'
);
select is(
  (select pages from private.pending_connections where token_hash = repeat('3', 64)),
  '[]'::jsonb, 'an expired one loses its Page tokens at the next sweep'
);
select is(
  private.clip(E'Evil\u202E" (1)\n. Call \u2066me\u2069' || chr(7), 255),
  'Evil" (1). Call me',
  'names lose control and bidi characters'
);

delete from auth.users where id = '00000000-0000-4000-8000-00000000f003';
select is_empty(
  $$select 1 from private.pending_connections where doctor_id = '00000000-0000-4000-8000-00000000f003'$$,
  'a deleted user''s pending connections go with them'
);

select * from finish();
rollback;

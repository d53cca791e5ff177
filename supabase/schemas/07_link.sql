-- Finishing a link: the RPCs behind instagram-connect's finish (POST /instagram-connect/finish), which
-- the signed-in doctor calls with the pending connection's token. The only path that writes
-- public.doctor_instagram.
--
-- Three steps, the first and the last of them RPCs:
-- 1. open_pending_connection(), before the function does anything at Meta: refuses another doctor's
--    session, offers a choice when several Pages were shared, or answers the Page to link (and the
--    Page the doctor would leave);
-- 2. the function subscribes the Page to the app's webhooks (a failure links nothing) and unsubscribes
--    the Page the doctor leaves, while they still hold it, so no other doctor can link it in between;
-- 3. link_pending_connection(), one transaction: consume the pending connection, refuse a Page another
--    doctor holds, upsert the doctor's row. If it fails, the function puts Meta back as it was
--    (page_is_linked() tells it whether the Page it subscribed is held by anyone).
--
-- Same rules as 06_start_and_callback.sql: in `public` for PostgREST, SECURITY DEFINER with
-- search_path = '', executable by service_role only (they trust the doctor id they are given), errors
-- as PTxyz with the catalogue code in DETAIL.

-- PT409 page_already_linked. The message names the Page (its name and id) and what to do: the edge
-- function shows it to the doctor as it is. Not SECURITY DEFINER: only called by the functions below.
create function private.raise_page_already_linked(p_page jsonb)
returns void
language plpgsql
set search_path = ''
as $$
begin
  raise exception using
    errcode = 'PT409',
    message = format('The Facebook Page %s is already linked to another doctor. They must disconnect it first, or choose another Page.',
                     case when p_page ? 'page_name' then format('"%s" (%s)', p_page ->> 'page_name', p_page ->> 'page_id')
                          else p_page ->> 'page_id' end),
    detail = 'page_already_linked';
end;
$$;
revoke all on function private.raise_page_already_linked(jsonb) from public;

-- Step 1 of finish. Answers one of:
--   { outcome: 'session_mismatch' }  the signed-in doctor did not start this flow: the pending connection
--                                    is destroyed and the refusal audited (instagram.link_refused). This
--                                    is an answer, not an error, so that both commit; the edge function
--                                    then answers 403.
--   { outcome: 'choose', pages, expires_at }  several Pages and none chosen, or a single Page another
--                                    doctor holds (no tokens in the answer; `taken` marks the Pages another
--                                    doctor holds, never who; the pending connection stays)
--   { outcome: 'ready', page, leaving? }  the Page to link, with its encrypted token, and, when the doctor
--                                    holds another Page, that Page with its encrypted token, so finish
--                                    unsubscribes it before the link
-- or raises pending_unknown / pending_used / pending_expired / page_not_found / page_already_linked.
create function public.open_pending_connection(
  p_doctor_id uuid,
  p_token_hash text,
  p_page_id text default null,
  p_correlation_id text default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  pending private.pending_connections := private.lock_pending_connection(p_token_hash);
  page jsonb;
  current_link public.doctor_instagram;
begin
  if pending.doctor_id <> p_doctor_id then
    delete from private.pending_connections where token_hash = p_token_hash;
    perform set_config('app.actor_id', p_doctor_id::text, true);
    perform set_config('app.correlation_id', coalesce(p_correlation_id, ''), true);
    perform private.append_audit('instagram.link_refused', pending.doctor_id::text, jsonb_build_object(
      'reason', 'session_mismatch',
      'pending_doctor_id', pending.doctor_id,
      'offered_page_ids', (select jsonb_agg(offered ->> 'page_id') from jsonb_array_elements(pending.pages) as offered)
    ));
    return jsonb_build_object('outcome', 'session_mismatch');
  elsif pending.expires_at <= now() then
    raise exception using errcode = 'PT400', message = 'This connection expired', detail = 'pending_expired';
  end if;

  -- Several Pages, or a single one another doctor holds: the doctor chooses, and sees which are taken
  -- (never by whom), so nobody picks into a page_already_linked.
  if p_page_id is null and (jsonb_array_length(pending.pages) > 1 or exists (
    select 1 from public.doctor_instagram
    where instagram_page_id = pending.pages -> 0 ->> 'page_id' and doctor_id <> p_doctor_id
  )) then
    return jsonb_build_object(
      'outcome', 'choose',
      'expires_at', pending.expires_at,
      'pages', (
        select jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
          'page_id', offered ->> 'page_id',
          'page_name', offered ->> 'page_name',
          'instagram_username', offered ->> 'instagram_username',
          'taken', case when exists (
            select 1 from public.doctor_instagram as holder
            where holder.instagram_page_id = offered ->> 'page_id' and holder.doctor_id <> p_doctor_id
          ) then true end
        )) order by position)
        from jsonb_array_elements(pending.pages) with ordinality as item(offered, position)
      )
    );
  end if;

  page := private.pending_page(pending, p_page_id);
  if exists (
    select 1 from public.doctor_instagram
    where instagram_page_id = page ->> 'page_id' and doctor_id <> p_doctor_id
  ) then
    perform private.raise_page_already_linked(page);
  end if;
  select * into current_link from public.doctor_instagram where doctor_id = p_doctor_id;
  return jsonb_strip_nulls(jsonb_build_object(
    'outcome', 'ready',
    'page', page,
    'leaving', case when current_link.instagram_page_id <> page ->> 'page_id' then jsonb_build_object(
      'page_id', current_link.instagram_page_id,
      'access_token', current_link.instagram_access_token
    ) end
  ));
end;
$$;
revoke all on function public.open_pending_connection(uuid, text, text, text) from public, anon, authenticated;
grant execute on function public.open_pending_connection(uuid, text, text, text) to service_role;

-- Step 3 of finish, one transaction: mark the pending connection used and empty it, delete the doctor's
-- other unused pending connections, refuse a Page another doctor holds, upsert the doctor's row with the
-- Facebook user and scopes (connected_at kept when the same Page is linked again; that is a reconnect:
-- the link is active again and audited as instagram.reconnected), and return the link
-- with the Page it replaced (previous_page_id). The audit trigger records the change under this
-- request's correlation id. Everything is checked again under the row lock, so of two finishes racing,
-- one links and the other gets pending_used; a Page linked by another doctor between the check and the
-- insert gives the same page_already_linked; any failure leaves the pending connection as it was.
create function public.link_pending_connection(
  p_doctor_id uuid,
  p_token_hash text,
  p_page_id text,
  p_correlation_id text default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  pending private.pending_connections := private.lock_pending_connection(p_token_hash);
  page jsonb;
  previous_page_id text;
  linked public.doctor_instagram;
begin
  if pending.doctor_id <> p_doctor_id then
    raise exception using errcode = 'PT403', message = 'This connection was started by another account', detail = 'session_mismatch';
  elsif pending.expires_at <= now() then
    raise exception using errcode = 'PT400', message = 'This connection expired', detail = 'pending_expired';
  end if;
  page := private.pending_page(pending, p_page_id);

  update private.pending_connections set used_at = now(), pages = '[]'::jsonb where token_hash = p_token_hash;
  delete from private.pending_connections
  where doctor_id = p_doctor_id and token_hash <> p_token_hash and used_at is null;
  perform set_config('app.actor_id', p_doctor_id::text, true);
  perform set_config('app.correlation_id', coalesce(p_correlation_id, ''), true);

  if exists (
    select 1 from public.doctor_instagram
    where instagram_page_id = page ->> 'page_id' and doctor_id <> p_doctor_id
  ) then
    perform private.raise_page_already_linked(page);
  end if;

  select instagram_page_id into previous_page_id from public.doctor_instagram where doctor_id = p_doctor_id;
  -- The same Page again: a reconnect (a fresh token, the link active again), audited as such.
  if previous_page_id = page ->> 'page_id' then
    perform set_config('app.audit_action', 'instagram.reconnected', true);
  end if;

  begin
    insert into public.doctor_instagram as current_link (
      doctor_id, instagram_page_id, instagram_access_token, instagram_username,
      page_name, instagram_business_account_id, facebook_user_id, granted_scopes
    )
    values (
      p_doctor_id, page ->> 'page_id', page ->> 'access_token', page ->> 'instagram_username',
      page ->> 'page_name', page ->> 'instagram_account_id', pending.facebook_user_id, pending.granted_scopes
    )
    on conflict (doctor_id) do update set
      instagram_page_id = excluded.instagram_page_id,
      instagram_access_token = excluded.instagram_access_token,
      instagram_username = excluded.instagram_username,
      page_name = excluded.page_name,
      instagram_business_account_id = excluded.instagram_business_account_id,
      facebook_user_id = excluded.facebook_user_id,
      granted_scopes = excluded.granted_scopes,
      -- A new token: its kind and health start over (the next maintenance run checks it first).
      token_kind = excluded.token_kind,
      token_expires_at = null,
      status = 'active',
      status_reason = null,
      checked_at = null,
      reconnect_by = null,
      connected_at = case
        when current_link.instagram_page_id = excluded.instagram_page_id then current_link.connected_at
        else now()
      end
    returning * into linked;
  exception when unique_violation then
    perform private.raise_page_already_linked(page);
  end;
  perform set_config('app.audit_action', '', true);

  return jsonb_build_object(
    'doctor_id', linked.doctor_id,
    'instagram_page_id', linked.instagram_page_id,
    'instagram_username', linked.instagram_username,
    'page_name', linked.page_name,
    'instagram_business_account_id', linked.instagram_business_account_id,
    'facebook_user_id', linked.facebook_user_id,
    'granted_scopes', linked.granted_scopes,
    'connected_at', linked.connected_at,
    'status', linked.status,
    'previous_page_id', previous_page_id
  );
end;
$$;
revoke all on function public.link_pending_connection(uuid, text, text, text) from public, anon, authenticated;
grant execute on function public.link_pending_connection(uuid, text, text, text) to service_role;

-- Whether anyone holds the Page: after a failed link, finish unsubscribes the Page it subscribed only
-- when nobody does (another doctor's link still needs the subscription).
create function public.page_is_linked(p_page_id text)
returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select exists (select 1 from public.doctor_instagram where instagram_page_id = p_page_id);
$$;
revoke all on function public.page_is_linked(text) from public, anon, authenticated;
grant execute on function public.page_is_linked(text) to service_role;

-- Finishing a link: the RPCs behind instagram-connect's finish (POST /instagram-connect/finish), which
-- the signed-in doctor calls with the pending connection's token. The only path that writes
-- public.doctor_instagram, for both ways in: a Page of Facebook Login (token_kind 'page') and the
-- account of Instagram Login (token_kind 'instagram_user').
--
-- Three steps, the first and the last of them RPCs:
-- 1. open_pending_connection(), before the function does anything at Meta: refuses another doctor's
--    session, offers a choice when several Pages were shared, or answers the account to link (and the
--    link the doctor would leave: another account, or the same account through the other path);
-- 2. the function subscribes the account (its Page, or the Instagram account itself) to the app's
--    webhooks (a failure links nothing) and unsubscribes what the doctor leaves, while they still hold
--    it, so no other doctor can link it in between and no event is delivered twice;
-- 3. link_pending_connection(), one transaction: consume the pending connection, refuse an account or a
--    Page another doctor holds, upsert the doctor's row. Linked or not, the function then converges both
--    subscriptions to what the database says (subscription_target(), 12_subscriptions.sql).
--
-- The link's identity is the Instagram professional account (01): whatever the path, one account
-- belongs to one doctor. The Facebook path answers page_already_linked, the Instagram path
-- account_already_linked.
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

-- PT409 account_already_linked: the Instagram path's counterpart, naming the account (@username and
-- id) and what to do. Not SECURITY DEFINER: only called by the functions below.
create function private.raise_account_already_linked(p_account jsonb)
returns void
language plpgsql
set search_path = ''
as $$
begin
  raise exception using
    errcode = 'PT409',
    message = format('The Instagram account %s is already linked to another doctor. They must disconnect it first, or sign in with another Instagram account.',
                     case when p_account ? 'instagram_username'
                          then format('@%s (%s)', p_account ->> 'instagram_username', p_account ->> 'instagram_account_id')
                          else p_account ->> 'instagram_account_id' end),
    detail = 'account_already_linked';
end;
$$;
revoke all on function private.raise_account_already_linked(jsonb) from public;

-- Refuses what another doctor holds: on the Facebook path the Page or its Instagram account (held
-- through a Page or through Instagram Login) -> page_already_linked; on the Instagram path the account
-- (held either way) -> account_already_linked. STABLE: it only reads.
create function private.refuse_held_elsewhere(p_doctor_id uuid, p_token_kind text, p_entry jsonb)
returns void
language plpgsql
stable
set search_path = ''
as $$
begin
  if p_token_kind = 'instagram_user' then
    if exists (
      select 1 from public.doctor_instagram
      where instagram_business_account_id = p_entry ->> 'instagram_account_id' and doctor_id <> p_doctor_id
    ) then
      perform private.raise_account_already_linked(p_entry);
    end if;
  elsif exists (
    select 1 from public.doctor_instagram
    where (instagram_page_id = p_entry ->> 'page_id' or instagram_business_account_id = p_entry ->> 'instagram_account_id')
      and doctor_id <> p_doctor_id
  ) then
    perform private.raise_page_already_linked(p_entry);
  end if;
end;
$$;
revoke all on function private.refuse_held_elsewhere(uuid, text, jsonb) from public;

-- Step 1 of finish. Answers one of:
--   { outcome: 'session_mismatch' }  the signed-in doctor did not start this flow: the pending connection
--                                    is destroyed and the refusal audited (instagram.link_refused). This
--                                    is an answer, not an error, so that both commit; the edge function
--                                    then answers 403.
--   { outcome: 'choose', pages, expires_at }  several Pages and none chosen, or a single Page another
--                                    doctor holds (no tokens in the answer; `taken` marks the Pages
--                                    another doctor holds, or whose Instagram account another doctor holds
--                                    through Instagram Login, never who; the pending connection stays).
--                                    Never for Instagram Login: there is one account and nothing to pick.
--   { outcome: 'ready', token_kind, page, leaving? }  the account to link (a Page entry, or Instagram
--                                    Login's account entry) with its encrypted token, and, when the
--                                    doctor's link holds another account or the same one through the other
--                                    path, that link { token_kind, page_id?, instagram_account_id,
--                                    access_token }, so finish unsubscribes it before the link
-- or raises pending_unknown / pending_used / pending_expired / page_not_found / page_already_linked /
-- account_already_linked.
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
      'pending_doctor_id', pending.doctor_id
    ) || case when pending.token_kind = 'instagram_user' then jsonb_build_object(
      'token_kind', pending.token_kind,
      'offered_instagram_account_ids',
      (select jsonb_agg(offered ->> 'instagram_account_id') from jsonb_array_elements(pending.pages) as offered)
    ) else jsonb_build_object(
      'offered_page_ids', (select jsonb_agg(offered ->> 'page_id') from jsonb_array_elements(pending.pages) as offered)
    ) end);
    return jsonb_build_object('outcome', 'session_mismatch');
  elsif pending.expires_at <= now() then
    raise exception using errcode = 'PT400', message = 'This connection expired', detail = 'pending_expired';
  end if;

  -- Several Pages, or a single one another doctor holds (the Page, or its account through Instagram
  -- Login): the doctor chooses, and sees which are taken (never by whom), so nobody picks into a
  -- page_already_linked.
  if pending.token_kind = 'page' and p_page_id is null and (jsonb_array_length(pending.pages) > 1 or exists (
    select 1 from public.doctor_instagram
    where (instagram_page_id = pending.pages -> 0 ->> 'page_id'
           or instagram_business_account_id = pending.pages -> 0 ->> 'instagram_account_id')
      and doctor_id <> p_doctor_id
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
            where (holder.instagram_page_id = offered ->> 'page_id'
                   or holder.instagram_business_account_id = offered ->> 'instagram_account_id')
              and holder.doctor_id <> p_doctor_id
          ) then true end
        )) order by position)
        from jsonb_array_elements(pending.pages) with ordinality as item(offered, position)
      )
    );
  end if;

  page := private.pending_page(pending, p_page_id);
  perform private.refuse_held_elsewhere(p_doctor_id, pending.token_kind, page);
  select * into current_link from public.doctor_instagram where doctor_id = p_doctor_id;
  return jsonb_strip_nulls(jsonb_build_object(
    'outcome', 'ready',
    'token_kind', pending.token_kind,
    'page', page,
    'leaving', case when current_link.doctor_id is not null and (
      current_link.token_kind <> pending.token_kind
      or (pending.token_kind = 'page' and current_link.instagram_page_id <> page ->> 'page_id')
      or (pending.token_kind = 'instagram_user'
          and current_link.instagram_business_account_id is distinct from page ->> 'instagram_account_id')
    ) then jsonb_strip_nulls(jsonb_build_object(
      'token_kind', current_link.token_kind,
      'page_id', current_link.instagram_page_id,
      'instagram_account_id', current_link.instagram_business_account_id,
      'access_token', current_link.instagram_access_token
    )) end
  ));
end;
$$;
revoke all on function public.open_pending_connection(uuid, text, text, text) from public, anon, authenticated;
grant execute on function public.open_pending_connection(uuid, text, text, text) to service_role;

-- Step 3 of finish, one transaction: mark the pending connection used and empty it, delete the doctor's
-- other unused pending connections, refuse an account or Page another doctor holds, upsert the doctor's
-- row and return the link with what it replaced (previous_page_id, previous_instagram_account_id,
-- previous_token_kind). A Page link takes the Facebook user; an Instagram Login link takes the Instagram
-- user, the token's expiry and token_refreshed_at = now(), and no Page, Page name or Facebook user.
-- The same account linked again the same way (the same Page; or the same account through Instagram
-- Login) is a reconnect: connected_at kept, the link active again, audited as instagram.reconnected.
-- The audit trigger records the change under this request's correlation id. Everything is checked again
-- under the row lock, so of two finishes racing, one links and the other gets pending_used; an account
-- linked by another doctor between the check and the insert gives the same 409; any failure leaves the
-- pending connection as it was.
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
  via_instagram boolean := pending.token_kind = 'instagram_user';
  page jsonb;
  previous public.doctor_instagram;
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

  perform private.refuse_held_elsewhere(p_doctor_id, pending.token_kind, page);

  select * into previous from public.doctor_instagram where doctor_id = p_doctor_id for update;
  -- A disconnect in progress owns the link until it deletes it (12_subscriptions.sql): linking now would
  -- hand that disconnect's revoke a fresh token to kill. One that died (its mark ran out) is taken over.
  if previous.disconnecting_until > now() then
    raise exception using errcode = 'PT409', message = 'A disconnect is in progress', detail = 'disconnect_in_progress';
  end if;
  -- The same account again, the same way: a reconnect (a fresh token, the link active again).
  if previous.token_kind = pending.token_kind and (
    (not via_instagram and previous.instagram_page_id = page ->> 'page_id')
    or (via_instagram and previous.instagram_business_account_id = page ->> 'instagram_account_id')
  ) then
    perform set_config('app.audit_action', 'instagram.reconnected', true);
  end if;

  begin
    insert into public.doctor_instagram as current_link (
      doctor_id, instagram_page_id, instagram_access_token, instagram_username,
      page_name, instagram_business_account_id, facebook_user_id, granted_scopes,
      token_kind, token_expires_at, instagram_user_id, token_refreshed_at
    )
    values (
      p_doctor_id, page ->> 'page_id', page ->> 'access_token', page ->> 'instagram_username',
      page ->> 'page_name', page ->> 'instagram_account_id',
      case when not via_instagram then pending.facebook_user_id end, pending.granted_scopes,
      pending.token_kind,
      case when via_instagram then (page ->> 'token_expires_at')::timestamptz end,
      case when via_instagram then page ->> 'instagram_user_id' end,
      case when via_instagram then now() end
    )
    on conflict (doctor_id) do update set
      instagram_page_id = excluded.instagram_page_id,
      instagram_access_token = excluded.instagram_access_token,
      instagram_username = excluded.instagram_username,
      page_name = excluded.page_name,
      instagram_business_account_id = excluded.instagram_business_account_id,
      facebook_user_id = excluded.facebook_user_id,
      granted_scopes = excluded.granted_scopes,
      instagram_user_id = excluded.instagram_user_id,
      -- A new token: its kind and health start over (the next maintenance run checks it first).
      token_kind = excluded.token_kind,
      token_expires_at = excluded.token_expires_at,
      token_refreshed_at = excluded.token_refreshed_at,
      status = 'active',
      status_reason = null,
      checked_at = null,
      reconnect_by = null,
      -- A new link holds its subscription again, even over a disconnect in progress (another tab): that
      -- disconnect deletes it, and converges what it deleted.
      disconnecting_until = null,
      connected_at = case
        when current_link.token_kind = excluded.token_kind and (
          current_link.instagram_page_id = excluded.instagram_page_id
          or (excluded.token_kind = 'instagram_user'
              and current_link.instagram_business_account_id = excluded.instagram_business_account_id)
        ) then current_link.connected_at
        else now()
      end
    returning * into linked;
  exception when unique_violation then
    if via_instagram then
      perform private.raise_account_already_linked(page);
    end if;
    perform private.raise_page_already_linked(page);
  end;
  perform set_config('app.audit_action', '', true);

  return jsonb_build_object(
    'doctor_id', linked.doctor_id,
    'token_kind', linked.token_kind,
    'instagram_page_id', linked.instagram_page_id,
    'instagram_username', linked.instagram_username,
    'page_name', linked.page_name,
    'instagram_business_account_id', linked.instagram_business_account_id,
    'instagram_user_id', linked.instagram_user_id,
    'facebook_user_id', linked.facebook_user_id,
    'granted_scopes', linked.granted_scopes,
    'token_expires_at', linked.token_expires_at,
    'connected_at', linked.connected_at,
    'status', linked.status,
    'previous_page_id', previous.instagram_page_id,
    'previous_instagram_account_id', previous.instagram_business_account_id,
    'previous_token_kind', previous.token_kind
  );
end;
$$;
revoke all on function public.link_pending_connection(uuid, text, text, text) from public, anon, authenticated;
grant execute on function public.link_pending_connection(uuid, text, text, text) to service_role;

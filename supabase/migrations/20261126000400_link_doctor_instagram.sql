-- The only way a link is written: consumes the one-time state, refuses a page another doctor holds,
-- upserts the doctor's row and (through the audit trigger) records who did it under which correlation
-- id, all in the caller's single transaction, so a failure leaves nothing behind.

create function public.link_doctor_instagram(
  p_doctor_id uuid,
  p_nonce_hash text,
  p_page_id text,
  p_access_token text,
  p_page_name text default null,
  p_instagram_username text default null,
  p_instagram_business_account_id text default null,
  p_correlation_id text default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  previous_page_id text;
  linked public.doctor_instagram;
begin
  perform private.use_oauth_state(p_nonce_hash, p_doctor_id, true);

  perform set_config('app.actor_id', p_doctor_id::text, true);
  perform set_config('app.correlation_id', coalesce(p_correlation_id, ''), true);

  if exists (
    select 1 from public.doctor_instagram
    where instagram_page_id = p_page_id and doctor_id <> p_doctor_id
  ) then
    raise exception using
      errcode = 'PT409',
      message = format('Facebook Page %s is already linked to another doctor', p_page_id),
      detail = 'page_already_linked',
      hint = 'The other doctor must disconnect it first, or choose another Page';
  end if;

  select instagram_page_id into previous_page_id
  from public.doctor_instagram where doctor_id = p_doctor_id;

  begin
    insert into public.doctor_instagram as current_link (
      doctor_id, instagram_page_id, instagram_access_token, instagram_username,
      page_name, instagram_business_account_id
    )
    values (
      p_doctor_id, p_page_id, p_access_token, p_instagram_username,
      p_page_name, p_instagram_business_account_id
    )
    on conflict (doctor_id) do update set
      instagram_page_id = excluded.instagram_page_id,
      instagram_access_token = excluded.instagram_access_token,
      instagram_username = excluded.instagram_username,
      page_name = excluded.page_name,
      instagram_business_account_id = excluded.instagram_business_account_id,
      connected_at = case
        when current_link.instagram_page_id = excluded.instagram_page_id then current_link.connected_at
        else now()
      end
    returning * into linked;
  exception when unique_violation then
    -- Another doctor linked this page between our check and our insert: same answer as the check.
    raise exception using
      errcode = 'PT409',
      message = format('Facebook Page %s is already linked to another doctor', p_page_id),
      detail = 'page_already_linked',
      hint = 'The other doctor must disconnect it first, or choose another Page';
  end;

  return jsonb_build_object(
    'doctor_id', linked.doctor_id,
    'instagram_page_id', linked.instagram_page_id,
    'instagram_username', linked.instagram_username,
    'page_name', linked.page_name,
    'instagram_business_account_id', linked.instagram_business_account_id,
    'connected_at', linked.connected_at,
    'previous_page_id', previous_page_id
  );
end;
$$;

revoke all on function public.link_doctor_instagram(uuid, text, text, text, text, text, text, text)
  from public, anon, authenticated;
grant execute on function public.link_doctor_instagram(uuid, text, text, text, text, text, text, text)
  to service_role;

-- Meta's webhook subscriptions, as the database decides them: a Page (token_kind 'page', the Facebook
-- app) or an Instagram account (token_kind 'instagram_user', the Instagram app) is subscribed if and only
-- if a link holds it. Functions change Meta between RPCs, so several may act on one subscription at once
-- (a maintenance run, a disconnect, a finish). The protocol (docs in
-- supabase/functions/_shared/meta/subscription.ts, which runs it):
-- * every change of who holds a subscription bumps its version here, in the transaction that makes it;
-- * whoever made such a change, or wrote to Meta's subscription, ends by converging: read the holder and
--   the version (subscription_target), make Meta match, read again, and repeat while the version moved.
-- The last write to land at Meta is then followed by a read that saw no later change.

create table private.subscription_versions (
  token_kind text not null constraint subscription_versions_kind check (token_kind in ('page', 'instagram_user')),
  object_id text not null constraint subscription_versions_object_format check (object_id ~ '^[0-9]{1,32}$'),
  version bigint not null default 1,
  primary key (token_kind, object_id)
);
comment on table private.subscription_versions is
  'Bumped whenever a link starts or stops holding a Page''s or an Instagram account''s webhook subscription (12_subscriptions.sql).';

-- What a link holds: its Page on the Facebook path, its account on the Instagram path.
create function private.subscription_object(p_link public.doctor_instagram)
returns text
language sql
immutable
set search_path = ''
as $$
  select case when p_link.token_kind = 'page' then p_link.instagram_page_id else p_link.instagram_business_account_id end;
$$;
revoke all on function private.subscription_object(public.doctor_instagram) from public, anon, authenticated, service_role;

create function private.bump_subscription(p_token_kind text, p_object_id text)
returns void
language sql
set search_path = ''
as $$
  insert into private.subscription_versions as versions (token_kind, object_id) values (p_token_kind, p_object_id)
  on conflict (token_kind, object_id) do update set version = versions.version + 1;
$$;
revoke all on function private.bump_subscription(text, text) from public, anon, authenticated, service_role;

-- Inserts, deletes (whoever makes them, a cascade from auth.users included) and updates that move a
-- link to another Page, account or path. A new token for the same subscription changes nothing at Meta.
create function private.bump_subscription_versions()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_op <> 'INSERT' and private.subscription_object(old) is not null and (
    tg_op = 'DELETE' or old.token_kind is distinct from new.token_kind
    or private.subscription_object(old) is distinct from private.subscription_object(new)
  ) then
    perform private.bump_subscription(old.token_kind, private.subscription_object(old));
  end if;
  if tg_op <> 'DELETE' and private.subscription_object(new) is not null and (
    tg_op = 'INSERT' or old.token_kind is distinct from new.token_kind
    or private.subscription_object(old) is distinct from private.subscription_object(new)
  ) then
    perform private.bump_subscription(new.token_kind, private.subscription_object(new));
  end if;
  return null;
end;
$$;
revoke all on function private.bump_subscription_versions() from public, anon, authenticated, service_role;

create trigger doctor_instagram_subscription_versions
after insert or update or delete on public.doctor_instagram
for each row execute function private.bump_subscription_versions();

-- The subscription's version and the link that holds it, if any ({doctor_id, access_token}: the
-- encrypted token, bound to that doctor and p_object_id), in one snapshot. A read: STABLE.
create function public.subscription_target(p_token_kind text, p_object_id text)
returns jsonb
language sql
stable
security definer
set search_path = ''
as $$
  select jsonb_build_object(
    'version', coalesce((select version from private.subscription_versions
      where token_kind = p_token_kind and object_id = p_object_id), 0),
    'holder', (select jsonb_build_object('doctor_id', link.doctor_id, 'access_token', link.instagram_access_token)
      from public.doctor_instagram as link
      -- Each side of the or is one of the table's unique indexes.
      where (p_token_kind = 'page' and link.instagram_page_id = p_object_id)
        or (p_token_kind = 'instagram_user' and link.instagram_business_account_id = p_object_id
          and link.token_kind = 'instagram_user'))
  );
$$;
revoke all on function public.subscription_target(text, text) from public, anon, authenticated;
grant execute on function public.subscription_target(text, text) to service_role;

-- Facebook users whose grant a disconnect left to instagram-maintenance: a run was checking the link,
-- and revoking then would kill the token that run needs to take back a subscription it may have
-- restored meanwhile (disconnect.ts). Recorded by disconnect_doctor_instagram() (08).
create table private.pending_revokes (
  facebook_user_id text primary key
    constraint pending_revokes_user_format check (facebook_user_id ~ '^[0-9]{1,32}$'),
  requested_at timestamptz not null default now()
);
comment on table private.pending_revokes is
  'Facebook users whose app permissions a disconnect left to instagram-maintenance to revoke (12_subscriptions.sql).';

-- Takes the pending revokes whose Facebook user no link or waiting connection uses any more (those
-- still used are dropped: revoking would cut another doctor off). Answers the user ids to revoke.
create function public.take_pending_revokes()
returns text[]
language plpgsql
security definer
set search_path = ''
as $$
declare
  taken text[];
begin
  with gone as (
    delete from private.pending_revokes returning facebook_user_id
  )
  select coalesce(array_agg(gone.facebook_user_id order by gone.facebook_user_id), '{}') into taken
  from gone
  where not exists (select 1 from public.doctor_instagram as link where link.facebook_user_id = gone.facebook_user_id)
    and not exists (
      select 1 from private.pending_connections as waiting
      where waiting.facebook_user_id = gone.facebook_user_id and waiting.used_at is null and waiting.expires_at > now()
    );
  return taken;
end;
$$;
revoke all on function public.take_pending_revokes() from public, anon, authenticated;
grant execute on function public.take_pending_revokes() to service_role;

-- Meta's webhook subscriptions, as the database decides them: a Page (token_kind 'page', the Facebook
-- app) or an Instagram account (token_kind 'instagram_user', the Instagram app) is subscribed if and only
-- if a link holds it; a link being disconnected (disconnecting_until, 01) holds nothing. Functions change
-- Meta between RPCs, so several may act on one subscription at once (a maintenance run, a disconnect, a
-- finish). The protocol (supabase/functions/_shared/meta/link_webhooks.ts runs it):
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

-- What a link holds: its Page on the Facebook path, its account on the Instagram path; nothing while it
-- is marked as being disconnected. A mark that ran out (a disconnect that died) still holds nothing until
-- the next run clears it (lease_instagram_links(), 11), a holder change like any other.
create function private.held_subscription(p_link public.doctor_instagram)
returns text
language sql
immutable
set search_path = ''
as $$
  select case
    when p_link.disconnecting_until is not null then null
    when p_link.token_kind = 'page' then p_link.instagram_page_id
    else p_link.instagram_business_account_id
  end;
$$;
revoke all on function private.held_subscription(public.doctor_instagram) from public, anon, authenticated, service_role;

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
-- link to another Page, account or path, or start its disconnect. A new token for the same subscription
-- changes nothing at Meta.
create function private.bump_subscription_versions()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  before_kind text := case when tg_op <> 'INSERT' then old.token_kind end;
  before_held text := case when tg_op <> 'INSERT' then private.held_subscription(old) end;
  after_kind text := case when tg_op <> 'DELETE' then new.token_kind end;
  after_held text := case when tg_op <> 'DELETE' then private.held_subscription(new) end;
begin
  if before_kind is not distinct from after_kind and before_held is not distinct from after_held then
    return null;
  end if;
  if before_held is not null then
    perform private.bump_subscription(before_kind, before_held);
  end if;
  if after_held is not null then
    perform private.bump_subscription(after_kind, after_held);
  end if;
  return null;
end;
$$;
revoke all on function private.bump_subscription_versions() from public, anon, authenticated, service_role;

create trigger doctor_instagram_subscription_versions
after insert or update or delete on public.doctor_instagram
for each row execute function private.bump_subscription_versions();

-- The subscription's version and the link that holds it, if any ({doctor_id, access_token}: the
-- encrypted token, bound to that doctor and p_object_id), in one snapshot. A read: STABLE. A link being
-- disconnected holds nothing, as held_subscription() says.
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
      where ((p_token_kind = 'page' and link.instagram_page_id = p_object_id)
          or (p_token_kind = 'instagram_user' and link.instagram_business_account_id = p_object_id
            and link.token_kind = 'instagram_user'))
        and link.disconnecting_until is null)
  );
$$;
revoke all on function public.subscription_target(text, text) from public, anon, authenticated;
grant execute on function public.subscription_target(text, text) to service_role;

-- Facebook users whose grant a disconnect left to instagram-maintenance: a run was checking the link,
-- and revoking before that run is done would kill the token it needs to take back a subscription it may
-- have restored meanwhile (disconnect.ts). That run revokes at its end (after_lease, its lease id); any
-- other run once its lease has ended (not_before). Also the link another tab made during the disconnect,
-- of another Facebook user (not_before now).
create table private.pending_revokes (
  facebook_user_id text primary key
    constraint pending_revokes_user_format check (facebook_user_id ~ '^[0-9]{1,32}$'),
  requested_at timestamptz not null default now(),
  not_before timestamptz not null default now(),
  after_lease uuid
);
comment on table private.pending_revokes is
  'Facebook users whose app permissions a disconnect left to instagram-maintenance to revoke (12_subscriptions.sql).';

-- Leaves a revoke to maintenance: to the run holding lease p_after_lease at its end, to any run from
-- p_not_before. Asked again for a user already queued: the later date wins, and a different run's lease
-- leaves the date alone to decide.
create function public.defer_revoke(p_facebook_user_id text, p_not_before timestamptz, p_after_lease uuid default null)
returns void
language sql
security definer
set search_path = ''
as $$
  insert into private.pending_revokes as pending (facebook_user_id, not_before, after_lease)
  values (p_facebook_user_id, coalesce(p_not_before, now()), p_after_lease)
  on conflict (facebook_user_id) do update set
    not_before = greatest(pending.not_before, excluded.not_before),
    after_lease = case when pending.after_lease = excluded.after_lease then pending.after_lease end;
$$;
revoke all on function public.defer_revoke(text, timestamptz, uuid) from public, anon, authenticated;
grant execute on function public.defer_revoke(text, timestamptz, uuid) to service_role;

-- The pending revokes due for the run holding p_lease_id (its own, at its end; everyone's past their
-- date) whose Facebook user no link or waiting connection uses any more: one a link uses is dropped
-- (revoking would cut that doctor off), one a waiting connection uses waits for it to expire. Each is claimed for an hour: complete_pending_revoke() removes
-- it once Meta confirmed, else a run after that tries again.
create function public.take_pending_revokes(p_lease_id uuid default null)
returns text[]
language plpgsql
security definer
set search_path = ''
as $$
declare
  taken text[];
begin
  -- A link uses the user again (a link being disconnected uses nobody): dropped, that doctor needs it.
  delete from private.pending_revokes as pending
  where (pending.not_before <= now() or pending.after_lease = p_lease_id) and exists (
    select 1 from public.doctor_instagram as link
    where link.facebook_user_id = pending.facebook_user_id and link.disconnecting_until is null
  );
  -- A connection waiting to be finished uses it: not before that connection expires.
  update private.pending_revokes as pending set not_before = waiting.expires_at, after_lease = null
  from (
    select facebook_user_id, max(expires_at) as expires_at from private.pending_connections
    where used_at is null and expires_at > now() group by facebook_user_id
  ) as waiting
  where waiting.facebook_user_id = pending.facebook_user_id
    and (pending.not_before <= now() or pending.after_lease = p_lease_id);
  with due as (
    update private.pending_revokes set not_before = now() + interval '1 hour', after_lease = null
    where not_before <= now() or after_lease = p_lease_id
    returning facebook_user_id
  )
  select coalesce(array_agg(due.facebook_user_id order by due.facebook_user_id), '{}') into taken from due;
  return taken;
end;
$$;
revoke all on function public.take_pending_revokes(uuid) from public, anon, authenticated;
grant execute on function public.take_pending_revokes(uuid) to service_role;

-- Meta confirmed the revoke (or says the user is unknown to the app: nothing left to revoke).
create function public.complete_pending_revoke(p_facebook_user_id text)
returns void
language sql
security definer
set search_path = ''
as $$
  delete from private.pending_revokes where facebook_user_id = p_facebook_user_id;
$$;
revoke all on function public.complete_pending_revoke(text) from public, anon, authenticated;
grant execute on function public.complete_pending_revoke(text) to service_role;

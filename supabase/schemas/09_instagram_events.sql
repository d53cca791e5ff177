-- public.instagram_events: what Meta's webhooks deliver for linked accounts (instagram-webhook), one row
-- per event, for the practice's worker and for the doctor to read.
--
-- Why here: Meta batches up to 1000 updates per delivery and retries a delivery it did not see
-- answered 200 for up to 36 hours ("Webhooks - Getting Started"). So the receiver answers 200 only once
-- the whole batch is stored (store_instagram_events(): one call, one transaction, the routing to the
-- doctor inside it), and an event delivered twice is stored once (event_key, unique per account).
--
-- Rules enforced here:
-- * Routing: an event belongs to the doctor whose link names its account, by the Instagram account id
--   (`instagram` object: entry.id) or by the Page (`page` object: entry.id, mapped to the link's
--   account). Events for accounts no doctor holds are counted in the answer (and so in the log), not
--   stored: there is nobody to give them to.
-- * Each delivery is accepted only under the secret of the app its account was linked through: the
--   Facebook app for Page links, the Instagram app for Instagram Login links (store_instagram_events()'s
--   p_app). An entry for a link of the other path is counted (wrong_app_events), not stored, so a
--   doctor who switched paths, or a forged delivery under the other app's secret, stores nothing twice.
-- * Identity of an event, for dedupe: a message is its mid; an unsend is the mid it removes; anything
--   else (reactions, read receipts, postbacks, ... carry the mid of the message they refer to, so
--   their mid is no identity) is the SHA-256 of the event as Meta sent it (jsonb: key order does not
--   matter). The keys of these kinds cannot collide (store_instagram_events() says how), and an unsend
--   removes the text of its own mid only, compared whole.
-- * Unsends: a message event with is_deleted (Meta sends true or "true") removes the stored text and
--   attachments of that message and the text of its edits, as Meta's review for Instagram messaging
--   requires; a message or an edit that arrives after its unsend is stored without them, and an
--   advisory lock per message makes this hold when they arrive at the same time.
-- * Patients' messages are health data: the edge function logs counts, never payloads. Rows are
--   purged after the retention period (purge_instagram_events(), for the scheduled maintenance), and
--   removed by Meta's data deletion callbacks (request_data_deletion(), request_instagram_data_deletion(),
--   08): each event keeps the Facebook user or the Instagram user of the link it came through, so it can
--   be found after the link is gone.
-- * Disconnect and deauthorize end the link, not the practice's record: stored events stay until the
--   retention period ends or Meta asks for deletion. New events for that account are no longer stored.
-- * Doctors read their own events through RLS; no client role writes. service_role reads them, and a
--   worker takes them with claim_instagram_events() / ack_instagram_events(): a lease (claimed_by,
--   claimed_until), since row locks end with each PostgREST call.

create table public.instagram_events (
  id bigint generated always as identity primary key,
  doctor_id uuid not null references auth.users (id) on delete cascade,
  -- The Instagram professional account the event is for (the link's identity, 01).
  account_id text not null
    constraint instagram_events_account_id_format check (account_id ~ '^[0-9]{1,32}$'),
  -- The Facebook user of the link at the time: what Meta's data deletion request names.
  facebook_user_id text
    constraint instagram_events_facebook_user_id_format check (facebook_user_id ~ '^[0-9]{1,32}$'),
  -- The webhook field: messages, message_reactions, messaging_seen, messaging_postbacks, ... (or, for
  -- an entry's `changes`, its field).
  kind text not null
    constraint instagram_events_kind_format check (kind ~ '^[a-z_]{1,64}$'),
  event_key text not null
    constraint instagram_events_event_key_length check (char_length(event_key) between 1 and 200),
  -- The mid of the message, or of the message a reaction, read receipt or unsend refers to: its first
  -- 512 characters (an index holds no more; the payload holds all of it).
  message_id text
    constraint instagram_events_message_id_length check (char_length(message_id) <= 512),
  sender_id text
    constraint instagram_events_sender_id_length check (char_length(sender_id) <= 64),
  recipient_id text
    constraint instagram_events_recipient_id_length check (char_length(recipient_id) <= 64),
  -- incoming (from someone else), or echo: what the practice's own account sent.
  direction text not null
    constraint instagram_events_direction check (direction in ('incoming', 'echo')),
  -- Meta's timestamp (milliseconds in messaging events, seconds in entry.time).
  occurred_at timestamptz not null,
  received_at timestamptz not null default now(),
  -- The event as Meta sent it (one item of entry.messaging, or of entry.changes), less an unsent text.
  payload jsonb not null,
  -- When an unsend removed this message's text and attachments.
  text_removed_at timestamptz,
  claimed_by text
    constraint instagram_events_claimed_by_format check (claimed_by ~ '^[A-Za-z0-9._:-]{1,128}$'),
  claimed_until timestamptz,
  processed_at timestamptz,
  constraint instagram_events_account_event_key unique (account_id, event_key),
  -- The Instagram user of the link at the time, for an Instagram Login link (facebook_user_id is then
  -- null): what the Instagram app's data deletion request names.
  instagram_user_id text
    constraint instagram_events_instagram_user_id_format check (instagram_user_id ~ '^[0-9]{1,32}$')
);
comment on table public.instagram_events is
  'Webhook events for linked Instagram accounts: stored by store_instagram_events(), taken by a worker with claim_instagram_events() and ack_instagram_events(), purged by purge_instagram_events().';
comment on column public.instagram_events.payload is
  'The event as Meta sent it. Holds patients'' messages: never logged; an unsend removes its text.';

-- The doctor's events, newest first (RLS reads and the foreign key's index).
create index instagram_events_doctor_received_idx on public.instagram_events (doctor_id, received_at desc);
-- Retention: everything received before a time.
create index instagram_events_received_idx on public.instagram_events (received_at);
-- Unsends find their message and its edits. message_id first: with account_id first, a lookup by
-- (account_id, event_key) could take this index for the account alone and read all of its events.
create index instagram_events_message_idx on public.instagram_events (message_id, account_id);
-- Data deletion finds the events of a Facebook user.
create index instagram_events_facebook_user_idx on public.instagram_events (facebook_user_id);
-- And of an Instagram user.
create index instagram_events_instagram_user_idx on public.instagram_events (instagram_user_id);
-- The worker's queue: what is not processed yet, oldest first.
create index instagram_events_unprocessed_idx on public.instagram_events (id) where processed_at is null;

alter table public.instagram_events enable row level security;
revoke all on public.instagram_events from public, anon, authenticated, service_role;
grant select on public.instagram_events to authenticated, service_role;

create policy "Doctors can read their own Instagram events"
  on public.instagram_events for select to authenticated
  using ((select auth.uid()) = doctor_id);

-- Stores one delivery: p_object is the webhook object ('instagram' or 'page'), p_entries its `entry`
-- array, p_app the app whose secret signed it ('facebook', or 'instagram' for Instagram Login, which
-- delivers the `instagram` object only). An entry is stored only for a link made through that app's
-- path (Page links under 'facebook', Instagram Login links under 'instagram'); others are counted in
-- wrong_app_events, which the edge function logs. Answers { stored, duplicates, unknown_account_events,
-- wrong_app_events, unsends }. Raises 22023 for a malformed batch (the edge function has validated its
-- shape; this is the last line). One transaction: all of the batch or none of it, so Meta's retry of a
-- failed delivery finds nothing half-stored.
create function public.store_instagram_events(p_object text, p_entries jsonb, p_app text default 'facebook')
returns jsonb
language plpgsql
security definer
set search_path = ''
-- Every lookup here is by a unique key or an index. PL/pgSQL keeps a statement's plan for the session,
-- and one made while the table was nearly empty is a sequential scan that would then stay one as the
-- table grows (a 1000-event delivery went from 0.1 s to over 5 s in a few thousand rows): no scans.
set enable_seqscan = off
as $$
declare
  entry jsonb;
  item jsonb;
  link record;
  kind text;
  mid text;
  mid_key text;
  unsend boolean;
  key text;
  stored int := 0;
  duplicates int := 0;
  unknown int := 0;
  wrong_app int := 0;
  -- The kind of link this app's deliveries are for.
  own_kind text := case when p_app = 'instagram' then 'instagram_user' else 'page' end;
  unsends int := 0;
  inserted int;
begin
  if p_object is null or p_object not in ('instagram', 'page') or jsonb_typeof(p_entries) is distinct from 'array'
     or p_app is null or p_app not in ('facebook', 'instagram') or (p_app = 'instagram' and p_object <> 'instagram') then
    raise exception using errcode = '22023', message = 'an app (facebook, or instagram with the instagram object), a webhook object (instagram or page) and an array of entries are required';
  end if;

  for entry in select value from jsonb_array_elements(p_entries) loop
    -- Each by its unique key (an index), never a scan of every link.
    if p_object = 'instagram' then
      select d.doctor_id, d.instagram_business_account_id as account_id, d.facebook_user_id, d.instagram_user_id,
             d.token_kind into link
      from public.doctor_instagram as d where d.instagram_business_account_id = entry ->> 'id';
    else
      select d.doctor_id, d.instagram_business_account_id as account_id, d.facebook_user_id, d.instagram_user_id,
             d.token_kind into link
      from public.doctor_instagram as d where d.instagram_page_id = entry ->> 'id' and d.instagram_business_account_id is not null;
    end if;
    if not found then
      unknown := unknown + jsonb_array_length(coalesce(entry -> 'messaging', '[]')) + jsonb_array_length(coalesce(entry -> 'changes', '[]'));
      continue;
    elsif link.token_kind <> own_kind then
      -- Signed with the other app's secret than the one this account was linked through: not stored.
      wrong_app := wrong_app + jsonb_array_length(coalesce(entry -> 'messaging', '[]')) + jsonb_array_length(coalesce(entry -> 'changes', '[]'));
      continue;
    end if;

    for item in
      select value from jsonb_array_elements(coalesce(entry -> 'messaging', '[]'))
      union all
      select value from jsonb_array_elements(coalesce(entry -> 'changes', '[]'))
    loop
      -- A kind the table's CHECK would refuse must not fail the whole delivery (Meta would retry it for
      -- 36 hours): an unexpected field name is stored as 'other'.
      kind := case
        when item ? 'field' then case when item ->> 'field' ~ '^[a-z_]{1,64}$' then item ->> 'field' else 'other' end
        when jsonb_typeof(item -> 'message') = 'object' then 'messages'
        when item ? 'reaction' then 'message_reactions'
        when item ? 'read' then 'messaging_seen'
        when item ? 'postback' then 'messaging_postbacks'
        when item ? 'referral' then 'messaging_referral'
        when jsonb_typeof(item -> 'message_edit') = 'object' then 'message_edit'
        else 'messaging'
      end;
      mid := coalesce(item -> 'message' ->> 'mid', item -> 'reaction' ->> 'mid', item -> 'read' ->> 'mid',
                      item -> 'postback' ->> 'mid', item -> 'message_edit' ->> 'mid', item -> 'value' ->> 'mid');
      -- Long mids (Meta's are about 100 characters) are keyed by their hash, so every key fits the column;
      -- so is a mid that reads like such a key, so that no two mids share one.
      mid_key := case
        when char_length(mid) <= 180 and mid not like 'sha256:%' then mid
        else 'sha256:' || encode(sha256(convert_to(mid, 'UTF8')), 'hex')
      end;
      -- Meta sends is_deleted as true or as "true".
      unsend := kind = 'messages' and coalesce(item -> 'message' ->> 'is_deleted' = 'true', false);
      -- Keys: 'message:' or 'unsend:' and the mid's key, or the kind, ':' and the event's hash. A kind is
      -- [a-z_] and 'messages' is plural, so only a field named 'message' or 'unsend' (a `changes` item's)
      -- could write a message's or an unsend's key: it is set apart by a '.', which no kind has. The keys
      -- stored before stay as they were, so Meta's redelivery of one (36 hours) is still a duplicate.
      key := case
        when kind = 'messages' and mid is not null then (case when unsend then 'unsend:' else 'message:' end) || mid_key
        when kind in ('message', 'unsend') then 'field.' || kind || ':' || encode(sha256(convert_to(item::text, 'UTF8')), 'hex')
        else kind || ':' || encode(sha256(convert_to(item::text, 'UTF8')), 'hex')
      end;

      if kind in ('messages', 'message_edit') and mid is not null then
        -- A message, its edits and its unsend may be delivered at the same time (Meta delivers in
        -- parallel and in no promised order): one at a time per message, so that whichever comes second
        -- sees the first, committed, and no unsent text survives a race.
        perform pg_advisory_xact_lock(hashtextextended('instagram_events:' || link.account_id || ':' || mid_key, 0));
        if not unsend and exists (
          select 1 from public.instagram_events
          where account_id = link.account_id and event_key = 'unsend:' || mid_key
        ) then
          -- The unsend came first: the text never lands.
          item := item #- '{message,text}' #- '{message,attachments}' #- '{message_edit,text}';
        end if;
      end if;

      insert into public.instagram_events (
        doctor_id, account_id, facebook_user_id, instagram_user_id, kind, event_key, message_id, sender_id,
        recipient_id, direction, occurred_at, payload, text_removed_at
      )
      values (
        link.doctor_id, link.account_id, link.facebook_user_id, link.instagram_user_id, kind, key, left(mid, 512),
        left(coalesce(item -> 'sender' ->> 'id', item -> 'value' -> 'from' ->> 'id'), 64),
        left(item -> 'recipient' ->> 'id', 64),
        case
          when item -> 'message' ->> 'is_echo' = 'true' or item -> 'sender' ->> 'id' = link.account_id then 'echo'
          else 'incoming'
        end,
        case
          when item ->> 'timestamp' ~ '^[0-9]{1,15}$' then to_timestamp((item ->> 'timestamp')::bigint / 1000.0)
          when entry ->> 'time' ~ '^[0-9]{1,15}$' then to_timestamp(
            case when (entry ->> 'time')::bigint > 100000000000 then (entry ->> 'time')::bigint / 1000.0
                 else (entry ->> 'time')::bigint end)
          else now()
        end,
        item,
        case when unsend then now() end
      )
      on conflict (account_id, event_key) do nothing;
      get diagnostics inserted = row_count;
      stored := stored + inserted;
      duplicates := duplicates + 1 - inserted;

      if unsend and inserted = 1 then
        -- The message and every edit of it lose their text.
        update public.instagram_events as earlier
        set payload = earlier.payload #- '{message,text}' #- '{message,attachments}' #- '{message_edit,text}',
            text_removed_at = now()
        where earlier.account_id = link.account_id and earlier.message_id = left(mid, 512)
          -- message_id is the mid's first 512 characters: the whole mid says which message it is.
          and coalesce(earlier.payload -> 'message' ->> 'mid', earlier.payload -> 'message_edit' ->> 'mid') = mid
          and earlier.kind in ('messages', 'message_edit') and earlier.event_key <> 'unsend:' || mid_key;
        unsends := unsends + 1;
      end if;
    end loop;
  end loop;

  return jsonb_build_object('stored', stored, 'duplicates', duplicates, 'unknown_account_events', unknown,
    'wrong_app_events', wrong_app, 'unsends', unsends);
end;
$$;
revoke all on function public.store_instagram_events(text, jsonb, text) from public, anon, authenticated;
grant execute on function public.store_instagram_events(text, jsonb, text) to service_role;

-- A worker takes up to p_limit events nobody holds (never processed, no lease or an expired one),
-- oldest first, for p_lease_seconds. SKIP LOCKED: workers claiming at the same time get different
-- events, never the same one, and do not wait for each other.
create function public.claim_instagram_events(p_worker text, p_limit int default 100, p_lease_seconds int default 300)
returns setof public.instagram_events
language plpgsql
security definer
set search_path = ''
as $$
begin
  if p_worker is null or p_worker !~ '^[A-Za-z0-9._:-]{1,128}$' or p_limit is null or p_limit not between 1 and 1000
     or p_lease_seconds is null or p_lease_seconds not between 1 and 3600 then
    raise exception using errcode = '22023', message = 'a worker name ([A-Za-z0-9._:-], up to 128), a limit of 1 to 1000 and a lease of 1 to 3600 seconds are required';
  end if;
  -- Answered oldest first (UPDATE ... RETURNING keeps no order of its own).
  return query
  with claimed as (
    update public.instagram_events as event
    set claimed_by = p_worker, claimed_until = now() + make_interval(secs => p_lease_seconds)
    where event.id in (
      select candidate.id from public.instagram_events as candidate
      where candidate.processed_at is null and (candidate.claimed_until is null or candidate.claimed_until <= now())
      order by candidate.id
      limit p_limit
      for update skip locked
    )
    returning event.*
  )
  select * from claimed order by claimed.id;
end;
$$;
revoke all on function public.claim_instagram_events(text, int, int) from public, anon, authenticated;
grant execute on function public.claim_instagram_events(text, int, int) to service_role;

-- The worker is done with these events: marked processed, if it still holds their lease. Answers how
-- many were; fewer than asked means a lease ran out (another worker may have them now).
create function public.ack_instagram_events(p_worker text, p_ids bigint[])
returns int
language plpgsql
security definer
set search_path = ''
as $$
declare
  acknowledged int;
begin
  update public.instagram_events
  set processed_at = now(), claimed_until = null
  where id = any(coalesce(p_ids, '{}')) and claimed_by = p_worker and processed_at is null and claimed_until > now();
  get diagnostics acknowledged = row_count;
  return acknowledged;
end;
$$;
revoke all on function public.ack_instagram_events(text, bigint[]) from public, anon, authenticated;
grant execute on function public.ack_instagram_events(text, bigint[]) to service_role;

-- Retention: removes every event received more than p_retention_days ago (INSTAGRAM_EVENT_RETENTION_DAYS,
-- default 90), in one statement (indexed by received_at), whatever their number; answers how many.
create function public.purge_instagram_events(p_retention_days int default 90)
returns int
language plpgsql
security definer
set search_path = ''
as $$
declare
  purged int;
begin
  if p_retention_days is null or p_retention_days not between 1 and 3650 then
    raise exception using errcode = '22023', message = 'a retention of 1 to 3650 days is required';
  end if;
  delete from public.instagram_events where received_at < now() - make_interval(days => p_retention_days);
  get diagnostics purged = row_count;
  return purged;
end;
$$;
revoke all on function public.purge_instagram_events(int) from public, anon, authenticated;
grant execute on function public.purge_instagram_events(int) to service_role;

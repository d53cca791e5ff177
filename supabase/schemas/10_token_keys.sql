-- public.token_key_usage(): how many stored Page tokens each encryption key protects, for key rotation.
--
-- Why: Page tokens are encrypted under a key ring (INSTAGRAM_TOKEN_ENCRYPTION_KEYS, primary first;
-- supabase/functions/_shared/crypto/page_token.ts) and each stored value names its key:
-- "v2.<key id>.<iv>.<ciphertext>", or "v1.<iv>.<ciphertext>" from before rotation, which is read with
-- the key whose id is `legacy`. A key removed from the ring while values still use it leaves those
-- tokens unreadable (the links stop working until their doctors reconnect). This function says which
-- keys are still in use and by how many tokens: instagram-maintenance refuses to run while one of them
-- is not in its ring, naming the key and the count, and the operator checks it before dropping an old
-- key (README, "Rotating the token encryption key").
--
-- Rules:
-- * Counted: every link's token (public.doctor_instagram), and the Page tokens of the pending
--   connections that can still be finished (unused and unexpired). A used one is emptied; an expired
--   one can no longer be finished and the sweep empties it, so its tokens are never decrypted again.
-- * The key id is read as page_token.ts reads it (private.token_key_id()): the id a v2 value names,
--   `legacy` for v1, null for a value in neither form (the CHECKs accept any "v<n>." prefix; the
--   functions never write another). Only key ids leave the function, never a ciphertext: an id is no
--   secret.
-- * SECURITY DEFINER (service_role has no privilege on private.pending_connections), with
--   search_path = '' and every table schema-qualified, like every SECURITY DEFINER function here.
--   EXECUTE only for service_role: the maintenance function, and the operator (the SQL editor runs as
--   postgres, the owner).

-- The key id of a stored token, or null when the value is in no form page_token.ts reads. IMMUTABLE:
-- the result depends on the argument only. EXECUTE is revoked from PUBLIC: only the functions here
-- (with their owner's rights) use it.
create function private.token_key_id(p_stored text)
returns text
language sql
immutable
set search_path = ''
as $$
  select case
    when p_stored ~ '^v1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$' then 'legacy'
    when p_stored ~ '^v2\.[a-z0-9][a-z0-9_-]{0,31}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$' then split_part(p_stored, '.', 2)
  end;
$$;
revoke all on function private.token_key_id(text) from public;

-- One row per key id in use (ordered by id, null last): tokens in links, and in pending connections.
create function public.token_key_usage()
returns table (key_id text, link_tokens bigint, pending_tokens bigint)
language sql
stable
security definer
set search_path = ''
as $$
  with stored as (
    select private.token_key_id(link.instagram_access_token) as id, true as in_link
    from public.doctor_instagram as link
    union all
    select private.token_key_id(page ->> 'access_token'), false
    from private.pending_connections as pending
    cross join lateral jsonb_array_elements(pending.pages) as page
    where pending.used_at is null and pending.expires_at > now()
  )
  select stored.id,
         count(*) filter (where stored.in_link),
         count(*) filter (where not stored.in_link)
  from stored
  group by stored.id
  order by stored.id nulls last;
$$;
revoke all on function public.token_key_usage() from public, anon, authenticated;
grant execute on function public.token_key_usage() to service_role;

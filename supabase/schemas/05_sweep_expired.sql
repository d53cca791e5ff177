-- private.sweep_expired(): housekeeping for the two short-lived tables, so they stay small and no Page
-- token outlives its purpose, without a scheduled job.
--
-- create_oauth_state() (every connect that records a state) and create_pending_connection() (every
-- callback that stores a pending connection) call it. Each call empties the Page tokens of up to 50
-- expired pending connections, and deletes up to 50 pending connections and up to 50 states that
-- expired more than an hour ago: bounded, so no request pays for a backlog, and with skip locked, so
-- parallel requests neither wait for nor block each other. On a quiet deployment, schedule it too
-- (with pg_cron: select private.sweep_expired()).
--
-- SECURITY DEFINER, with search_path = '' and every table schema-qualified, like every SECURITY
-- DEFINER function here, so no object on a caller's search path can stand in for one of ours. EXECUTE
-- is revoked from PUBLIC, so only the owner can run it: through its own functions, or a job it
-- schedules.
create function private.sweep_expired()
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  update private.pending_connections set pages = '[]'::jsonb
  where token_hash in (
    select token_hash from private.pending_connections
    where expires_at <= now() and pages <> '[]'::jsonb
    order by expires_at
    limit 50
    for update skip locked
  );
  delete from private.pending_connections
  where token_hash in (
    select token_hash from private.pending_connections
    where expires_at < now() - interval '1 hour'
    order by expires_at
    limit 50
    for update skip locked
  );
  delete from private.oauth_states
  where nonce_hash in (
    select nonce_hash from private.oauth_states
    where expires_at < now() - interval '1 hour'
    order by expires_at
    limit 50
    for update skip locked
  );
end;
$$;
revoke all on function private.sweep_expired() from public;

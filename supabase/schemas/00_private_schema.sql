-- The `private` schema: everything no client may reach directly.
--
-- The Data API (PostgREST) serves only the schemas listed in supabase/config.toml ([api] schemas:
-- `public` and `graphql_public`), so nothing here gets an endpoint. Beyond that, no role but the
-- owner has any privilege on the schema (a new schema grants PUBLIC nothing; the revoke below states
-- it), so anon, authenticated and service_role cannot use anything in it even with direct SQL. The
-- tables here (audit log, OAuth states, pending connections, data deletion requests) are reached only
-- through SECURITY DEFINER functions in `public` that run with the owner's rights and that only
-- service_role may execute (06_start_and_callback.sql, 07_link.sql, 08_meta_lifecycle.sql).
--
-- No default privileges are set: each table and function in these files revokes and grants for
-- itself, next to its definition.

create schema private;
revoke all on schema private from public;

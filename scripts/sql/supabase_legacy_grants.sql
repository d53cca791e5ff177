-- Supabase projects made before new objects stopped getting grants by default (changelog #45329): the
-- API roles get everything new in `public`. The suite builds its PGlite database under this setting and
-- its server database without it, so every object's privileges are checked under both: the schema
-- states each grant (and revokes what it does not mean), whatever the project's default.
alter default privileges in schema public grant all on tables to anon, authenticated, service_role;
alter default privileges in schema public grant all on functions to anon, authenticated, service_role;
alter default privileges in schema public grant all on sequences to anon, authenticated, service_role;

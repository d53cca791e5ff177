-- Schedules instagram-maintenance every hour (Supabase's "Scheduling Edge Functions": pg_cron calls the
-- function through pg_net, with the URL and the key read from Vault at each run). Run once, in the SQL
-- editor, after enabling the pg_cron and pg_net extensions (Database > Extensions) and storing the two
-- secrets (below). README, "Keeping links alive", says why this keeps a secret key, not a publishable one.
--
--   select vault.create_secret('https://<project-ref>.supabase.co', 'project_url');
--   select vault.create_secret('<the secret key instagram-maintenance accepts>', 'instagram_maintenance_key');
select cron.schedule(
  'instagram-maintenance',
  '17 * * * *',
  $$
  select net.http_post(
    url := (select decrypted_secret from vault.decrypted_secrets where name = 'project_url')
      || '/functions/v1/instagram-maintenance',
    headers := jsonb_build_object(
      'content-type', 'application/json',
      'apikey', (select decrypted_secret from vault.decrypted_secrets where name = 'instagram_maintenance_key')
    ),
    body := '{}'::jsonb,
    timeout_milliseconds := 60000
  ) as request_id;
  $$
);

-- One row per doctor: the Facebook Page (and its Instagram business account) the doctor linked,
-- with the Page access token encrypted by the application (see _shared/token_crypto.ts).

-- Objects no API role may reach directly: the Data API exposes only `public` and `graphql_public`.
create schema if not exists private;
revoke all on schema private from public;

create table public.doctor_instagram (
  doctor_id uuid primary key references auth.users (id) on delete cascade,
  instagram_page_id text not null unique
    constraint doctor_instagram_page_id_format check (instagram_page_id ~ '^[0-9]{1,32}$'),
  -- Always the application's versioned ciphertext ("v1.<iv>.<ciphertext>"), never a raw Meta token.
  instagram_access_token text not null
    constraint doctor_instagram_token_encrypted check (
      instagram_access_token ~ '^v[0-9]+\.' and char_length(instagram_access_token) <= 4096
    ),
  instagram_username text
    constraint doctor_instagram_username_length check (char_length(instagram_username) between 1 and 64),
  page_name text
    constraint doctor_instagram_page_name_length check (char_length(page_name) between 1 and 255),
  instagram_business_account_id text
    constraint doctor_instagram_ig_account_id_format check (instagram_business_account_id ~ '^[0-9]{1,32}$'),
  connected_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

comment on table public.doctor_instagram is
  'Instagram account (via its Facebook Page) linked by each doctor. Written only by link_doctor_instagram().';
comment on column public.doctor_instagram.instagram_access_token is
  'Page access token, AES-GCM encrypted by the edge function. No client role can read this column.';
comment on column public.doctor_instagram.connected_at is
  'When the current page was linked; kept when the same page is re-linked with a fresh token.';

create function private.touch_updated_at()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.updated_at := now();
  return new;
end;
$$;
revoke all on function private.touch_updated_at() from public;

create trigger doctor_instagram_touch_updated_at
  before update on public.doctor_instagram
  for each row execute function private.touch_updated_at();

-- Supabase grants every new public table to the API roles by default; take that back and grant
-- column by column, so no client role can ever select the token, whatever the policies say.
alter table public.doctor_instagram enable row level security;
revoke all on public.doctor_instagram from public, anon, authenticated, service_role;
grant select (
  doctor_id, instagram_page_id, instagram_username, page_name,
  instagram_business_account_id, connected_at, updated_at
) on public.doctor_instagram to authenticated;
grant delete on public.doctor_instagram to authenticated;
-- The webhook worker resolves page -> doctor and reads the (encrypted) token with the secret key.
grant select, delete on public.doctor_instagram to service_role;

create policy "Doctors can read their own Instagram link"
  on public.doctor_instagram for select to authenticated
  using ((select auth.uid()) = doctor_id);

create policy "Doctors can disconnect their own Instagram link"
  on public.doctor_instagram for delete to authenticated
  using ((select auth.uid()) = doctor_id);

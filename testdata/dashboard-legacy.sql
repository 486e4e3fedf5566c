-- The dashboard's tables as they stood before usage-sync, with a little data, for the adoption
-- test: the migrations must extend these without touching their rows. Safe to apply twice.

create table if not exists public.profiles (
  user_id      uuid primary key,
  email        text,
  display_name text,
  avatar_url   text,
  created_at   timestamptz not null default now(),
  updated_at   timestamptz not null default now()
);

create table if not exists public.user_credits (
  user_id           uuid primary key references public.profiles (user_id),
  credits_remaining integer not null default 0 check (credits_remaining >= 0),
  updated_at        timestamptz not null default now()
);

create table if not exists public.tasks (
  task_id        text primary key,
  user_id        uuid not null,
  status         text,
  email_count    integer,
  valid_count    integer,
  invalid_count  integer,
  catchall_count integer,
  integration    text,
  api_key_id     text,
  created_at     timestamptz not null default now(),
  updated_at     timestamptz not null default now()
);
create index if not exists tasks_user_created_idx on public.tasks (user_id, created_at);

-- The dashboard's insert-only log of its own proxied calls (one row per call).
create table if not exists public.api_usage (
  id           uuid primary key default gen_random_uuid(),
  user_id      uuid not null,
  api_key_id   text,
  path         text not null,
  count        integer not null default 1,
  period_start timestamptz not null,
  period_end   timestamptz not null,
  created_at   timestamptz not null default now()
);

-- Keys created through the dashboard, with their plaintext: the worker must never copy it.
create table if not exists public.cached_api_keys (
  key_id      text primary key,
  user_id     uuid not null,
  name        text,
  key_plain   text,
  integration text,
  created_at  timestamptz not null default now()
);

insert into public.profiles (user_id, email, display_name) values
  ('aaaaaaaa-0000-4000-8000-000000000001', 'grace@example.com', 'Grace'),
  ('aaaaaaaa-0000-4000-8000-000000000002', 'alan@example.com', 'Alan')
on conflict do nothing;
insert into public.user_credits (user_id, credits_remaining) values
  ('aaaaaaaa-0000-4000-8000-000000000001', 500),
  ('aaaaaaaa-0000-4000-8000-000000000002', 0)
on conflict do nothing;
insert into public.tasks (task_id, user_id, status, email_count, valid_count, invalid_count, catchall_count, integration, created_at) values
  ('bbbbbbbb-1111-4000-8000-00000000a001', 'aaaaaaaa-0000-4000-8000-000000000001', 'completed', 4, 3, 1, 0, null, '2025-11-02T09:30:00Z')
on conflict do nothing;
insert into public.api_usage (user_id, api_key_id, path, count, period_start, period_end)
select 'aaaaaaaa-0000-4000-8000-000000000001', null, '/verify', 1, '2025-11-02T09:31:00Z', '2025-11-02T09:31:00Z'
where not exists (select 1 from public.api_usage where path = '/verify' and period_start = '2025-11-02T09:31:00Z');
insert into public.cached_api_keys (key_id, user_id, name, key_plain, integration) values
  ('cccccccc-2222-4000-8000-00000000b001', 'aaaaaaaa-0000-4000-8000-000000000001', 'Sheets', 'sk_test_placeholder', 'google-sheets')
on conflict do nothing;

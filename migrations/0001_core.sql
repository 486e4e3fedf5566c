-- usage-sync core schema: the dashboard's tables it reads or extends, and its own.
-- Written to apply to an empty database, to one holding the dashboard's older tables, and again.

create schema if not exists usage_sync;

-- Row-level security for a table the worker creates, on a Supabase database only (where
-- auth.uid() and the authenticated role exist): signed-in users may read their own rows.
create or replace function usage_sync.protect(tbl regclass) returns void
language plpgsql as $$
begin
  if to_regprocedure('auth.uid()') is null
     or not exists (select 1 from pg_roles where rolname = 'authenticated') then
    return;
  end if;
  execute format('alter table %s enable row level security', tbl);
  execute format('grant select on %s to authenticated', tbl);
  if not exists (select 1 from pg_policy where polrelid = tbl and polname = 'usage_sync_read_own') then
    execute format('create policy usage_sync_read_own on %s for select to authenticated using (user_id = auth.uid())', tbl);
  end if;
end $$;

-- The dashboard's tables, created only where they are missing, with the dashboard's shapes.
do $$
begin
  if to_regclass('public.profiles') is null then
    create table public.profiles (
      user_id      uuid primary key,
      email        text,
      display_name text,
      avatar_url   text,
      created_at   timestamptz not null default now(),
      updated_at   timestamptz not null default now()
    );
    perform usage_sync.protect('public.profiles');
  end if;

  if to_regclass('public.user_credits') is null then
    create table public.user_credits (
      user_id           uuid primary key references public.profiles (user_id),
      credits_remaining integer not null default 0 check (credits_remaining >= 0),
      updated_at        timestamptz not null default now()
    );
    perform usage_sync.protect('public.user_credits');
  end if;

  if to_regclass('public.tasks') is null then
    create table public.tasks (
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
    create index tasks_user_created_idx on public.tasks (user_id, created_at);
    perform usage_sync.protect('public.tasks');
  end if;

  if to_regclass('public.api_usage') is null then
    create table public.api_usage (
      id           uuid primary key default gen_random_uuid(),
      user_id      uuid not null,
      api_key_id   text,
      path         text,
      count        integer not null default 1,
      period_start timestamptz not null,
      period_end   timestamptz not null,
      created_at   timestamptz not null default now()
    );
    perform usage_sync.protect('public.api_usage');
  end if;
end $$;

-- tasks, extended with what the worker mirrors. updated_at is the upstream's.
alter table public.tasks
  add column if not exists unknown_count  integer,
  add column if not exists started_at     timestamptz,
  add column if not exists finished_at    timestamptz,
  add column if not exists source         text,
  add column if not exists webhook_url    text,
  add column if not exists progress       double precision,
  add column if not exists billable_count integer,
  add column if not exists synced_at      timestamptz;
create index if not exists tasks_user_created_idx on public.tasks (user_id, created_at);

-- api_usage keeps the dashboard's proxy-log rows (origin 'dashboard', path set) untouched; the
-- worker's rows are origin 'usage-sync', path null. Adding a column with a constant default
-- rewrites nothing, and the dashboard's future inserts default to its own origin.
alter table public.api_usage
  add column if not exists origin    text not null default 'dashboard',
  add column if not exists purpose   text,
  add column if not exists synced_at timestamptz;
alter table public.api_usage alter column path drop not null;
create unique index if not exists api_usage_key_day_uq
  on public.api_usage (api_key_id, period_start)
  where origin = 'usage-sync' and api_key_id is not null;
create unique index if not exists api_usage_purpose_day_uq
  on public.api_usage (user_id, purpose, period_start)
  where origin = 'usage-sync' and api_key_id is null;
create index if not exists api_usage_user_period_idx on public.api_usage (user_id, period_start);

do $$
begin
  if to_regclass('public.api_keys') is null then
    create table public.api_keys (
      id             text primary key,           -- the upstream key id; never the key's secret
      user_id        uuid not null,
      name           text,
      purpose        text,                       -- upstream spelling, normalised: zapier, n8n, google sheets, custom
      integration    text,                       -- the dashboard's: zapier, n8n, google-sheets, custom
      is_active      boolean not null default true,
      created_at     timestamptz,
      last_used_at   timestamptz,
      total_requests bigint,
      revoked_at     timestamptz,
      synced_at      timestamptz not null default now()
    );
    create index api_keys_user_idx on public.api_keys (user_id);
    perform usage_sync.protect('public.api_keys');
  end if;

  if to_regclass('public.sync_state') is null then
    create table public.sync_state (
      user_id              uuid primary key,
      status               text not null default 'pending'
                           check (status in ('pending', 'ok', 'error', 'degraded')),
      enrolled_at          timestamptz not null default now(),
      last_attempt_at      timestamptz,
      last_success_at      timestamptz,
      last_error           text,
      last_error_kind      text,
      consecutive_failures integer not null default 0,
      next_attempt_at      timestamptz not null default now(),
      settled_through      date,                -- every UTC day before this one is settled
      blocked_keys         jsonb not null default '{}'::jsonb, -- key id -> why charging is halted
      last_run_id          text,
      lease_owner          text,
      lease_expires_at     timestamptz,
      lease_token          bigint not null default 0,           -- fencing: bumped on every claim
      updated_at           timestamptz not null default now()
    );
    create index sync_state_due_idx on public.sync_state (next_attempt_at);
    perform usage_sync.protect('public.sync_state');
  end if;

  if to_regclass('public.credit_ledger') is null then
    create table public.credit_ledger (
      id            bigint generated always as identity primary key,
      user_id       uuid not null,
      source        text not null,             -- task, task_adjust, key_requests, or shadow:<one of them>
      source_id     text not null,             -- what makes one charge unique within its source
      subject       text not null,             -- what is charged: a task id, or <key id>/<UTC day>
      amount        integer not null check (amount > 0),
      debited       integer not null check (debited >= 0 and debited <= amount),
      credits_after integer not null check (credits_after >= 0),
      meta          jsonb not null default '{}'::jsonb,
      created_at    timestamptz not null default now(),
      unique (user_id, source, source_id)
    );
    create index credit_ledger_subject_idx on public.credit_ledger (user_id, subject);
    create index credit_ledger_user_created_idx on public.credit_ledger (user_id, created_at);
    perform usage_sync.protect('public.credit_ledger');
  end if;
end $$;

-- The ledger is append-only: money history is never rewritten, not even by the worker.
create or replace function usage_sync.ledger_append_only() returns trigger
language plpgsql as $$
begin
  raise exception 'credit_ledger is append-only: % is not allowed', tg_op;
end $$;
drop trigger if exists credit_ledger_append_only on public.credit_ledger;
create trigger credit_ledger_append_only
  before update or delete on public.credit_ledger
  for each row execute function usage_sync.ledger_append_only();
drop trigger if exists credit_ledger_no_truncate on public.credit_ledger;
create trigger credit_ledger_no_truncate
  before truncate on public.credit_ledger
  for each statement execute function usage_sync.ledger_append_only();

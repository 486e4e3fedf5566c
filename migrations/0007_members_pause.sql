-- Cycle members (a cycle lives only while a live worker is in it) and paused users.
-- Safe to re-run, on an empty database, on the dashboard's older tables and on Supabase.

-- usage_sync.cycle_member: one row per run that joined or started a cycle (docs/design.md, "Cycles").
-- A member is live while ended_at is null and expires_at has not passed; the run renews
-- expires_at (now + its SYNC_LEASE_TTL) every third of the TTL and sets ended_at when it ends,
-- however it ends short of SIGKILL. A run joins the current cycle only while some other member
-- of it is live, so a cycle whose workers have all ended (finished, SIGTERM, SIGKILL, a crash)
-- is over and the next run starts a new one. Rows of earlier cycles are deleted when a cycle
-- starts: nothing decides from them.
create table if not exists usage_sync.cycle_member (
  run_id     text primary key,
  cycle_id   bigint not null,
  worker     text not null,        -- WORKER_ID, for the logs and an operator's query
  joined_at  timestamptz not null, -- on the clock of the worker
  expires_at timestamptz not null, -- live until then unless renewed
  ended_at   timestamptz
);
create index if not exists cycle_member_live_idx on usage_sync.cycle_member (cycle_id) where ended_at is null;

-- Paused users: `usage-sync pause` sets status 'paused' with why, by whom and when; no worker,
-- schedule, webhook or request_sync() takes the user until `usage-sync resume`, which puts
-- back the status it had. The dashboard reads these columns (its users read their own row:
-- the reason is written for them to see, "sync paused by support").
alter table public.sync_state
  add column if not exists paused_at           timestamptz,
  add column if not exists paused_by           text,
  add column if not exists pause_reason        text,
  add column if not exists status_before_pause text;
alter table public.sync_state drop constraint if exists sync_state_status_check;
alter table public.sync_state add constraint sync_state_status_check
  check (status in ('pending', 'ok', 'error', 'degraded', 'paused'));
alter table public.sync_state drop constraint if exists sync_state_paused_check;
alter table public.sync_state add constraint sync_state_paused_check
  check (status <> 'paused' or (paused_at is not null and paused_by is not null and pause_reason is not null));
-- usage_sync_users_paused counts these at every scrape.
create index if not exists sync_state_paused_idx on public.sync_state (user_id) where status = 'paused';

-- request_sync() as in 0002_request_sync.sql, and false for a paused user: its request is not
-- taken (nothing would serve it), and nothing changes.
create or replace function public.request_sync() returns boolean
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  uid   uuid;
  taken integer;
begin
  if to_regprocedure('auth.uid()') is null then
    return false; -- not a Supabase database: nobody is signed in
  end if;
  uid := auth.uid();
  if uid is null or not exists (select 1 from public.profiles where user_id = uid) then
    return false;
  end if;
  insert into public.sync_state (user_id) values (uid) on conflict (user_id) do nothing;
  update public.sync_state
     set requested_at = now(), updated_at = now()
   where user_id = uid
     and status <> 'paused'
     and (requested_at is null or requested_at <= now() - interval '60 seconds');
  get diagnostics taken = row_count;
  return taken > 0;
end $$;

revoke all on function public.request_sync() from public;
revoke all on usage_sync.cycle_member from public;
do $$
begin
  if exists (select 1 from pg_roles where rolname = 'anon') then
    execute 'revoke all on function public.request_sync() from anon';
    execute 'revoke all on usage_sync.cycle_member from anon';
  end if;
  if exists (select 1 from pg_roles where rolname = 'authenticated') then
    execute 'grant execute on function public.request_sync() to authenticated';
    execute 'revoke all on usage_sync.cycle_member from authenticated';
  end if;
end $$;

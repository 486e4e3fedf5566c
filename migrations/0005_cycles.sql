-- Cycles shared by every worker on the database, so that replicas add up: a cycle is one pass
-- over the due users, joined by every worker that starts while it still has users to take, and
-- each user is taken at most once per cycle whichever worker takes it.
--
-- usage_sync.cycle holds the one current cycle. sync_state.cycle_id is the cycle that last took
-- the user (set when it is claimed, cleared when an abandoned sync releases it).
create table if not exists usage_sync.cycle (
  singleton  boolean primary key default true check (singleton),
  id         bigint not null default 0,
  started_at timestamptz,   -- on the clock of the worker that started it
  started_by text           -- that worker's run id, for the logs
);
insert into usage_sync.cycle (singleton) values (true) on conflict (singleton) do nothing;

alter table public.sync_state add column if not exists cycle_id bigint;

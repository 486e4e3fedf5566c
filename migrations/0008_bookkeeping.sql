-- usage-sync 0008: the worker's own bookkeeping, where only the worker writes (docs/design.md,
-- "The worker's own record, and the mirror"). Every input of a charge, a guard verdict, a
-- watermark or an ownership check is read from these tables or from the ledger; public.api_keys,
-- public.api_usage and public.tasks become a mirror the worker writes for the dashboard and never
-- decides from.
--
--   usage_sync.keys          which user an upstream key id belongs to, and the key as last mirrored
--   usage_sync.key_days      a key's requests per UTC day as last read (the guard's settled totals)
--   usage_sync.purpose_days  a user's requests per purpose per UTC day (unlisted_requests)
--   usage_sync.tasks         which user a task id belongs to, and the task as last mirrored (the
--                            task watermarks and first-seen finish times)
--   usage_sync.go_live       when a user's charging starts with CHARGE_FROM empty: the later of
--                            its enrolment and the first take by a worker in live mode
--
-- Safe to re-run. API roles get nothing on these tables (revoked explicitly below).

create table if not exists usage_sync.keys (
  key_id         text primary key,
  user_id        uuid not null,
  name           text,
  purpose        text,
  integration    text,
  is_active      boolean not null,
  created_at     timestamptz,
  last_used_at   timestamptz,
  total_requests bigint,
  revoked_at     timestamptz
);
create index if not exists keys_user_idx on usage_sync.keys (user_id);

create table if not exists usage_sync.key_days (
  key_id  text not null,
  day     timestamptz not null,   -- UTC midnight
  user_id uuid not null,
  purpose text not null,           -- '' when the listing gave none: matched as is by unlisted_requests
  count   bigint not null,
  primary key (key_id, day)
);
create index if not exists key_days_user_day_idx on usage_sync.key_days (user_id, day);

create table if not exists usage_sync.purpose_days (
  user_id uuid not null,
  purpose text not null,
  day     timestamptz not null,   -- UTC midnight
  count   bigint not null,
  primary key (user_id, purpose, day)
);

create table if not exists usage_sync.tasks (
  task_id        text primary key,
  user_id        uuid not null,
  status         text,
  email_count    bigint,
  valid_count    bigint,
  invalid_count  bigint,
  catchall_count bigint,
  unknown_count  bigint,
  billable_count bigint,
  progress       double precision,
  source         text,
  webhook_url    text,
  created_at     timestamptz not null,
  updated_at     timestamptz,
  started_at     timestamptz,
  finished_at    timestamptz
);
create index if not exists tasks_user_created_idx on usage_sync.tasks (user_id, created_at);

create table if not exists usage_sync.go_live (
  user_id uuid primary key,
  live_at timestamptz not null
);

-- Carry an existing deployment's state over from what the worker wrote: the mirror rows it
-- marks as its own, cross-checked against the ledger, which no API role can write. A row an
-- API role inserted before this migration cannot always be told from the worker's; the checks
-- below drop the imitations that can be (a task created in the future, a row whose owner
-- contradicts the ledger). docs/engineering.md, "Carrying the bookkeeping over".

-- Keys: the worker's api_keys rows, owned as the ledger says when it names the key.
insert into usage_sync.keys (key_id, user_id, name, purpose, integration, is_active, created_at, last_used_at,
                             total_requests, revoked_at)
select a.id, a.user_id, a.name, a.purpose, a.integration, a.is_active, a.created_at, a.last_used_at,
       a.total_requests, a.revoked_at
from public.api_keys a
where not exists (select 1 from public.credit_ledger l
                  where l.meta ->> 'key_id' = a.id and l.user_id <> a.user_id)
on conflict (key_id) do nothing;

-- Key days: the worker's per-key rows of keys it owns.
insert into usage_sync.key_days (key_id, day, user_id, purpose, count)
select u.api_key_id, u.period_start, u.user_id, coalesce(u.purpose, ''), u.count
from public.api_usage u
join usage_sync.keys k on k.key_id = u.api_key_id and k.user_id = u.user_id
where u.origin = 'usage-sync' and u.api_key_id is not null and u.period_start <= now()
on conflict (key_id, day) do nothing;

insert into usage_sync.purpose_days (user_id, purpose, day, count)
select u.user_id, u.purpose, u.period_start, u.count
from public.api_usage u
where u.origin = 'usage-sync' and u.api_key_id is null and u.purpose is not null and u.period_start <= now()
on conflict (user_id, purpose, day) do nothing;

-- Tasks the worker mirrored (synced_at set), none created in the future, owned as the ledger
-- says when it charged them.
insert into usage_sync.tasks (task_id, user_id, status, email_count, valid_count, invalid_count, catchall_count,
                              unknown_count, billable_count, progress, source, webhook_url, created_at, updated_at,
                              started_at, finished_at)
select t.task_id, t.user_id, t.status, t.email_count, t.valid_count, t.invalid_count, t.catchall_count,
       t.unknown_count, t.billable_count, t.progress, t.source, t.webhook_url, t.created_at, t.updated_at,
       t.started_at, t.finished_at
from public.tasks t
where t.synced_at is not null and t.created_at <= now()
  and not exists (select 1 from public.credit_ledger l
                  where l.subject = t.task_id and l.source in ('task', 'shadow:task') and l.user_id <> t.user_id)
on conflict (task_id) do nothing;

-- A stored watermark beyond now came from a row nobody could have listed: derive it again from
-- the carried tasks (REVISION_WINDOW's default, 24 h), as migration 0004 did.
update public.sync_state s
set task_watermark = w.wm, task_watermark_open = w.wm_open
from (
  select s2.user_id,
         (select coalesce(min(t.created_at) filter (where t.status in ('pending', 'processing')
                                                     or t.finished_at > now() - interval '24 hours'),
                          max(t.created_at))
          from usage_sync.tasks t where t.user_id = s2.user_id) as wm,
         (select coalesce(min(t.created_at) filter (where t.status in ('pending', 'processing')),
                          max(t.created_at))
          from usage_sync.tasks t where t.user_id = s2.user_id) as wm_open
  from public.sync_state s2
  where s2.task_watermark > now() or s2.task_watermark_open > now()
) w
where w.user_id = s.user_id;

-- Users this deployment already charged live keep their start (their enrolment), so no day is
-- charged again and none is lost: those with a real ledger row, or synced with no shadow row
-- (a live sync that found nothing to charge yet). A user with shadow rows only was on a trial:
-- it goes live at the next take by a live worker.
insert into usage_sync.go_live (user_id, live_at)
select s.user_id, s.enrolled_at
from public.sync_state s
where exists (select 1 from public.credit_ledger l where l.user_id = s.user_id and l.source not like 'shadow:%')
   or (s.last_success_at is not null
       and not exists (select 1 from public.credit_ledger l where l.user_id = s.user_id and l.source like 'shadow:%'))
on conflict (user_id) do nothing;

-- No API role may read or write the worker's bookkeeping.
do $$
declare
  r text;
  t text;
begin
  foreach t in array array['usage_sync.keys', 'usage_sync.key_days', 'usage_sync.purpose_days',
                           'usage_sync.tasks', 'usage_sync.go_live'] loop
    execute format('revoke all on table %s from public', t);
    foreach r in array array['anon', 'authenticated'] loop
      if exists (select 1 from pg_roles where rolname = r) then
        execute format('revoke all on table %s from %I', t, r);
      end if;
    end loop;
  end loop;
end $$;

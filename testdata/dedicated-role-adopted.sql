-- On top of dedicated-role.sql, when the dashboard's tables exist (a live project): migrate
-- extends tasks and api_usage (columns, indexes), which only their owner may do, and the worker
-- reads profiles (locking the row it syncs: FOR KEY SHARE needs UPDATE on one column) and
-- debits user_credits. Run as the project's postgres, which owns the dashboard's tables.
-- docs/supabase.md lists the same statements; the store tests apply exactly this file.
grant usage_sync to postgres;                             -- to hand it tables, and so the dashboard's own migrations still alter them
alter table public.tasks owner to usage_sync;
alter table public.api_usage owner to usage_sync;
grant select, update (user_id) on public.profiles to usage_sync;
grant select, update on public.user_credits to usage_sync;

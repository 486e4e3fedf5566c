-- Trust: on-demand triggers cannot be turned into a flood. sync_state.last_triggered_at is when
-- a webhook or a request_sync() last took the user for a sync; no trigger takes it again within
-- TRIGGER_MIN_INTERVAL. It lives in the database, not in a worker, so the interval holds across
-- replicas; only the worker writes it (the API roles may read sync_state, never write it).
-- Safe to re-run, on an empty database, on the dashboard's older tables and on Supabase.
alter table public.sync_state add column if not exists last_triggered_at timestamptz;

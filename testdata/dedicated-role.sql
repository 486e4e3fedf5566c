-- The grants a dedicated role (here usage_sync) needs to run `usage-sync migrate` and the worker
-- on a Supabase project whose dashboard tables do not exist yet. Run as the project's postgres.
-- docs/supabase.md lists the same statements; the store tests apply exactly this file.
grant create on database postgres to usage_sync;          -- migrate creates schema usage_sync
grant usage, create on schema public to usage_sync;       -- the worker's tables and request_sync()
grant usage on schema auth to usage_sync;                 -- its read policies and request_sync() call auth.uid()

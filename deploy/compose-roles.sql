-- The dedicated role migrate and the worker log in as, for deploy/compose.yaml: the grants
-- docs/supabase.md ("A dedicated role") lists, as far as they apply to plain PostgreSQL (no
-- schema auth, no API roles here). Run once by the db container's first start, as its superuser.
create role usage_sync login password 'usage_sync';
grant create on database postgres to usage_sync;          -- migrate creates schema usage_sync
grant usage, create on schema public to usage_sync;       -- the worker's tables and request_sync()

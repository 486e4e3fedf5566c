-- The parts of a Supabase database that row-level security needs and plain PostgreSQL lacks:
-- the API roles and auth.uid()/auth.role(), read from the request's JWT claims the way
-- PostgREST sets them. Tests apply this before the migrations to check the worker's policies:
--   set local role authenticated;
--   set local request.jwt.claims = '{"sub": "<user uuid>", "role": "authenticated"}';
-- Roles are cluster-wide, so creating one that exists is not an error.

do $$ begin create role anon nologin noinherit; exception when duplicate_object then null; end $$;
do $$ begin create role authenticated nologin noinherit; exception when duplicate_object then null; end $$;
do $$ begin create role service_role nologin noinherit bypassrls; exception when duplicate_object then null; end $$;

create schema if not exists auth;
grant usage on schema auth to anon, authenticated, service_role;
grant usage on schema public to anon, authenticated, service_role;

create or replace function auth.uid() returns uuid language sql stable as $$
  select nullif(coalesce(current_setting('request.jwt.claim.sub', true),
                         (current_setting('request.jwt.claims', true)::jsonb ->> 'sub')), '')::uuid
$$;

create or replace function auth.role() returns text language sql stable as $$
  select nullif(coalesce(current_setting('request.jwt.claim.role', true),
                         (current_setting('request.jwt.claims', true)::jsonb ->> 'role')), '')::text
$$;

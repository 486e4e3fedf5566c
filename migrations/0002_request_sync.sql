-- Operations: on-demand resync from the dashboard (sync_state.requested_at, public.request_sync())
-- and the index behind the usage_sync_oldest_success_age_seconds gauge.
-- Safe to re-run, on an empty database, on the dashboard's older tables and on Supabase.

alter table public.sync_state add column if not exists requested_at timestamptz;
-- The daemon polls for requests every SYNC_REQUEST_POLL; only requested rows are in this index.
create index if not exists sync_state_requested_idx
  on public.sync_state (requested_at) where requested_at is not null;

-- The metrics read the least recently synced user at every scrape: with this index that is the
-- first entry (or the first few, past users no longer in profiles), not a scan of every user.
create index if not exists sync_state_success_age_idx
  on public.sync_state ((coalesce(last_success_at, enrolled_at)));

-- request_sync() marks the signed-in user as requested and says whether the request was taken:
-- at most one per user per 60 s, and false for a user without a profiles row. A profile the
-- worker has not enrolled yet is enrolled here (as the worker's Enrol would), so its request is
-- not lost. SECURITY DEFINER because a signed-in user may only read sync_state; the search_path
-- is pinned so nobody can shadow the tables it names, and auth.uid() decides the user: there is
-- no parameter to name someone else.
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
  -- Under READ COMMITTED a concurrent second call waits for the first's row lock and then sees
  -- its requested_at, so two calls in the same instant take exactly one request.
  update public.sync_state
     set requested_at = now(), updated_at = now()
   where user_id = uid
     and (requested_at is null or requested_at <= now() - interval '60 seconds');
  get diagnostics taken = row_count;
  return taken > 0;
end $$;

revoke all on function public.request_sync() from public;
do $$
begin
  if exists (select 1 from pg_roles where rolname = 'anon') then
    execute 'revoke all on function public.request_sync() from anon';
  end if;
  if exists (select 1 from pg_roles where rolname = 'authenticated') then
    execute 'grant execute on function public.request_sync() to authenticated';
  end if;
end $$;

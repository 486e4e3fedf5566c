-- Going back to shadow mode and live again: usage_sync.go_live.settled_through is how far a
-- worker in live mode has settled the user's days (every UTC day before it), apart from
-- sync_state.settled_through (settled by a worker in either mode). A day that settled while the
-- worker was back in shadow mode was charged only as shadow: rows; a live sync reads the days
-- from this mark on, so it charges them once charging resumes (docs/design.md, "Charging").
-- Users already live keep their mark (nothing read again); users never taken live have no row.
-- Safe to re-run: the mark is copied only when the column is added.
do $$
begin
  if not exists (select 1 from information_schema.columns
                 where table_schema = 'usage_sync' and table_name = 'go_live' and column_name = 'settled_through') then
    alter table usage_sync.go_live add column settled_through date;
    update usage_sync.go_live g set settled_through = s.settled_through
    from public.sync_state s where s.user_id = g.user_id;
  end if;
end $$;

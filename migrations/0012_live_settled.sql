-- Going back to shadow mode and live again: usage_sync.go_live.settled_through is how far a
-- worker in live mode has settled the user's days (every UTC day before it), apart from
-- sync_state.settled_through (settled by a worker in either mode). A day that settled while the
-- worker was back in shadow mode was charged only as shadow: rows; a live sync reads the days
-- from this mark on, so it charges them once charging resumes (docs/design.md, "Charging").
-- Users already live keep their mark (nothing read again); users never taken live have no row.
-- usage_sync.tasks.charged_live says a live sync wrote the task as it stands (and charged it in
-- the same transaction); a shadow sync's write clears it. A finished task not charged live stays
-- behind the task watermark until a live sync charges it, and the flag lets the watermark find
-- such tasks without probing the ledger for each of a user's tasks on every sync. Existing rows
-- take it from the ledger: a task with a task charge was charged live.
-- Safe to re-run: the mark and the flag are filled only when their columns are added.
do $$
begin
  if not exists (select 1 from information_schema.columns
                 where table_schema = 'usage_sync' and table_name = 'go_live' and column_name = 'settled_through') then
    alter table usage_sync.go_live add column settled_through date;
    update usage_sync.go_live g set settled_through = s.settled_through
    from public.sync_state s where s.user_id = g.user_id;
  end if;
  if not exists (select 1 from information_schema.columns
                 where table_schema = 'usage_sync' and table_name = 'tasks' and column_name = 'charged_live') then
    alter table usage_sync.tasks add column charged_live boolean not null default false;
    update usage_sync.tasks t set charged_live = true
    where exists (select 1 from public.credit_ledger l
                  where l.user_id = t.user_id and l.subject = t.task_id and l.source = 'task');
  end if;
end $$;

-- usage-sync 0004: what a cheap, streaming sync needs to remember between syncs.
--   reads_fingerprint  a digest of the lifetime key listing of the last successful sync, set only
--                      when that sync's listings before and after its day windows agreed (nothing
--                      moved while it read); null otherwise. A sync whose first listing has the
--                      same digest may skip re-reading the unsettled windows.
--   task_watermark     where the next revision sweep's task listing starts (unfinished tasks and
--                      tasks finished within REVISION_WINDOW); written only by the final
--                      transaction of a complete pass, never derived from rows a chunk wrote.
--   task_watermark_open where a pass between sweeps starts (unfinished tasks only).
--   revision_swept_at  when finished tasks were last re-read for revisions.
alter table public.sync_state
  add column if not exists reads_fingerprint   text,
  add column if not exists task_watermark      timestamptz,
  add column if not exists task_watermark_open timestamptz,
  add column if not exists revision_swept_at   timestamptz;

-- Users synced before this migration: their task rows were written by whole passes, so their
-- watermarks can be derived once from the rows (REVISION_WINDOW's default, 24 h). A user without
-- tasks keeps null: its next pass lists everything, which is what a first pass does.
update public.sync_state s
set task_watermark = w.wm, task_watermark_open = w.wm_open
from (
  select t.user_id,
         coalesce(min(t.created_at) filter (where t.status in ('pending', 'processing')
                                             or t.finished_at > now() - interval '24 hours'),
                  max(t.created_at)) as wm,
         coalesce(min(t.created_at) filter (where t.status in ('pending', 'processing')),
                  max(t.created_at)) as wm_open
  from public.tasks t
  group by t.user_id
) w
where w.user_id = s.user_id and s.task_watermark is null and s.task_watermark_open is null;

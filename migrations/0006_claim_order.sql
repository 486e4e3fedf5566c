-- Claims take due users in (next_attempt_at, user_id) order. With an index on next_attempt_at
-- alone, every claim sorted the whole group of users sharing one next_attempt_at (a freshly
-- enrolled population): about 10 ms and 100 buffers a claim at 5,000 users, quadratic over a
-- cycle. This index lets a claim stop at the first claimable row.
create index if not exists sync_state_due_order_idx on public.sync_state (next_attempt_at, user_id);
drop index if exists public.sync_state_due_idx;

package syncer_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/usage-sync/usage-sync/internal/simulator"
	"github.com/usage-sync/usage-sync/internal/store"
	"github.com/usage-sync/usage-sync/internal/syncer"
)

// resyncWorld is one user with one key and one task on the day CHARGE_FROM falls in, synced
// until that day and the next are settled; the clock stands at noon of the third day.
func resyncWorld(t *testing.T) (e *env, u, key string, d0 time.Time) {
	t.Helper()
	start := time.Date(2026, 11, 10, 12, 0, 0, 0, time.UTC)
	d0 = time.Date(2026, 11, 8, 0, 0, 0, 0, time.UTC)
	e = setup(t, envConfig{start: start, sim: simulator.Config{Users: -1},
		opts: syncer.Options{ChargeFrom: &d0, RevisionWindow: time.Hour, RevisionInterval: time.Hour}})
	u, key = "44444444-0000-4000-8000-000000000001", "k-resync"
	e.sim.AddUser(u)
	e.sim.AddKey(u, simulator.Key{ID: key, Purpose: "zapier", CreatedAt: d0})
	for i := range 10 {
		e.sim.AddRequests(u, key, d0.Add(time.Hour+time.Duration(i)*time.Minute))
	}
	for i := range 5 {
		e.sim.AddRequests(u, key, d0.Add(25*time.Hour+time.Duration(i)*time.Minute))
	}
	fin := d0.Add(3 * time.Hour)
	e.sim.AddTask(u, simulator.Task{ID: "t-old", CreatedAt: d0.Add(2 * time.Hour), Emails: 10, Done: 10, Finished: true, FinishedAt: &fin})
	// A newer task, so the listing's watermark is past t-old.
	fin2 := start.Add(-90 * time.Minute)
	e.sim.AddTask(u, simulator.Task{ID: "t-new", CreatedAt: start.Add(-2 * time.Hour), Emails: 1, Done: 1, Finished: true, FinishedAt: &fin2})
	e.addProfile(u, 1000)
	if sum := e.cycle(e.syncer(), syncer.CycleOptions{UserID: u}); sum.Synced != 1 {
		t.Fatalf("first sync: %+v", sum)
	}
	if got := e.q(`select (settled_through - '2026-11-08'::date) from sync_state where user_id = $1`, u); got != 2 {
		t.Fatalf("settled_through is %d days after CHARGE_FROM's day, want 2", got)
	}
	return e, u, key, d0
}

func (e *env) keyCharged(u string, d time.Time) int64 {
	e.t.Helper()
	return e.q(`select coalesce(sum(amount), 0) from credit_ledger where user_id = $1 and source = 'key_requests' and meta->>'day' = $2`,
		u, d.Format(time.DateOnly))
}

func TestResyncChargesASettledDaysCorrectionOnce(t *testing.T) {
	t.Parallel()
	e, u, key, d0 := resyncWorld(t)
	s := e.syncer()
	if got := e.keyCharged(u, d0); got != 10 {
		t.Fatalf("day 0 charged %d, want 10", got)
	}
	// The vendor adds 7 late requests to the settled day 0, and revises the old task up by 5.
	for i := range 7 {
		e.sim.AddRequests(u, key, d0.Add(5*time.Hour+time.Duration(i)*time.Second))
	}
	e.sim.UpdateTask(u, "t-old", func(t *simulator.Task) { t.Emails, t.Done = 15, 15 })
	e.clock.Add(time.Minute)
	if sum := e.cycle(s, syncer.CycleOptions{UserID: u}); sum.Synced != 1 {
		t.Fatalf("--once: %+v", sum)
	}
	if got := e.keyCharged(u, d0); got != 10 {
		t.Fatalf("--once charged the settled day 0 up to %d: settled days are not read again", got)
	}
	if got := e.q(`select count(*) from credit_ledger where source = 'task_adjust'`); got != 0 {
		t.Fatalf("--once posted %d task_adjust rows for a task past its revision window", got)
	}

	res, err := s.Resync(context.Background(), syncer.ResyncOptions{UserID: u})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Days) != 2 || res.Charged != 12 || res.Debited != 12 || res.Status != "ok" {
		t.Fatalf("resync: %d days, charged %d, debited %d, status %s; want 2 days and 7 + 5 charged", len(res.Days), res.Charged, res.Debited, res.Status)
	}
	if d := res.Days[0]; d.Before.KeyRequests != 10 || d.After.KeyRequests != 17 || d.After.Charged-d.Before.Charged != 12 {
		t.Fatalf("day 0 in the table: %+v → %+v", d.Before, d.After)
	}
	if got := e.keyCharged(u, d0); got != 17 {
		t.Fatalf("day 0 charged %d after resync, want 17", got)
	}
	if got := e.q(`select count(*) from credit_ledger where source = 'key_requests' and source_id = $1`, key+"/2026-11-08/17"); got != 1 {
		t.Fatal("no key_requests row naming the new total 17")
	}
	if got := e.q(`select coalesce(sum(amount), 0) from credit_ledger where source = 'task_adjust' and subject = 't-old'`); got != 5 {
		t.Fatalf("task_adjust for t-old: %d, want 5", got)
	}
	if got := e.q(`select count from api_usage where api_key_id = $1 and period_start = '2026-11-08'`, key); got != 17 {
		t.Fatalf("mirror row of day 0 = %d, want 17", got)
	}
	if got := e.q(`select (settled_through - '2026-11-08'::date) from sync_state where user_id = $1`, u); got != 2 {
		t.Fatalf("resync moved settled_through to %d days after CHARGE_FROM's day, want 2", got)
	}
	rows := e.q(`select count(*) from credit_ledger`)
	again, err := s.Resync(context.Background(), syncer.ResyncOptions{UserID: u})
	if err != nil || again.Charged != 0 || e.q(`select count(*) from credit_ledger`) != rows {
		t.Fatalf("a second resync charged %d (err %v); want nothing", again.Charged, err)
	}
	e.checkInvariants(true)
}

func TestResyncDoesNotRefundACorrectionDown(t *testing.T) {
	t.Parallel()
	e, u, key, d0 := resyncWorld(t)
	d1 := d0.Add(24 * time.Hour)
	if n := e.sim.RemoveRequests(u, key, d1, d1.Add(24*time.Hour), 3); n != 3 {
		t.Fatalf("removed %d requests", n)
	}
	// Until the day is re-read, the stored day rows add up to more than the key's lifetime total:
	// the guard halts the key.
	e.clock.Add(time.Minute)
	e.cycle(e.syncer(), syncer.CycleOptions{UserID: u})
	if st := e.syncState(u); st.Status != "degraded" {
		t.Fatalf("after a correction down of a settled day the user is %q, want degraded", st.Status)
	}
	balance := e.q(`select credits_remaining from user_credits where user_id = $1`, u)
	rows := e.q(`select count(*) from credit_ledger`)
	res, err := e.syncer().Resync(context.Background(), syncer.ResyncOptions{UserID: u, From: &d1, To: &d1})
	if err != nil {
		t.Fatal(err)
	}
	// The key's window and (with unlisted_requests) its purpose's total both fell below what was
	// charged: both are decreases, neither is refunded.
	keyDown := false
	for _, r := range res.Revisions {
		keyDown = keyDown || (r.Family == store.FamilyKey && r.Total == 2 && r.Charged == 5)
	}
	if res.Charged != 0 || !keyDown {
		t.Fatalf("resync of a −3 correction: charged %d, decreases %+v; want nothing charged and 5 → 2 logged", res.Charged, res.Revisions)
	}
	if e.q(`select count(*) from credit_ledger`) != rows || e.q(`select credits_remaining from user_credits where user_id = $1`, u) != balance {
		t.Fatal("a correction down changed the ledger or the balance")
	}
	if got := e.q(`select count from api_usage where api_key_id = $1 and period_start = $2`, key, d1); got != 2 {
		t.Fatalf("mirror row of day 1 = %d, want the corrected 2", got)
	}
	if len(e.events("credits.revision_down")) != 1 {
		t.Fatal("the decrease was not logged as credits.revision_down")
	}
	// The next sync finds the data consistent again and lifts the halt.
	e.clock.Add(time.Minute)
	e.cycle(e.syncer(), syncer.CycleOptions{UserID: u})
	if st := e.syncState(u); st.Status != "ok" {
		t.Fatalf("after resync and a sync the user is %q, want ok", st.Status)
	}
	// I1 and I3 (I2's per-key bound is what a correction down breaks by definition: the
	// requests charged before the correction stay charged).
	if got := e.q(`select 1000 - credits_remaining - (select sum(debited) from credit_ledger where user_id = $1) from user_credits where user_id = $1`, u); got != 0 {
		t.Fatalf("I1: balance and ledger differ by %d", got)
	}
}

func TestResyncRangeAndLease(t *testing.T) {
	t.Parallel()
	e, u, _, d0 := resyncWorld(t)
	s := e.syncer()
	early := d0.AddDate(-1, 0, 0)
	if _, err := s.Resync(context.Background(), syncer.ResyncOptions{UserID: u, From: &early}); err != nil {
		t.Fatalf("a --from before the charge start is moved to it: %v", err)
	}
	far := d0.AddDate(0, 6, 0)
	s6 := e.syncer(func(o *syncer.Options) { o.ChargeFrom = &early })
	var re *syncer.RangeError
	if _, err := s6.Resync(context.Background(), syncer.ResyncOptions{UserID: u, To: &far}); !errors.As(err, &re) {
		t.Fatalf("a year of settled days: %v; want a RangeError", err)
	}
	if n := e.q(`select count(*) from sync_state where lease_owner is not null`); n != 0 {
		t.Fatal("a refused resync left its lease behind")
	}
	// A user leased by a live worker is refused, not waited for.
	pgx := e.db
	if _, err := pgx.Exec(context.Background(), `update sync_state set lease_owner = 'other', lease_expires_at = now() + interval '1 hour' where user_id = $1`, u); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Resync(context.Background(), syncer.ResyncOptions{UserID: u}); !errors.Is(err, syncer.ErrUserLeased) {
		t.Fatalf("resync of a leased user: %v; want ErrUserLeased", err)
	}
}

// The dispute runbook is pause → verify → resync → resume: a resync takes a paused user, charges
// the correction, and leaves it paused. Paused users arrive with branch exitcode's migration;
// until it is merged there is no 'paused' status to test.
func TestResyncOfAPausedUserKeepsItPaused(t *testing.T) {
	t.Parallel()
	e, u, key, d0 := resyncWorld(t)
	if e.q(`select count(*) from information_schema.columns where table_name = 'sync_state' and column_name = 'paused_at'`) == 0 {
		t.Skip("no paused users in this schema yet (usage-sync pause)")
	}
	if _, err := e.db.Exec(context.Background(), `update sync_state set status = 'paused', paused_at = now(), paused_by = 'test',
		pause_reason = 'dispute' where user_id = $1`, u); err != nil {
		t.Fatal(err)
	}
	for i := range 7 {
		e.sim.AddRequests(u, key, d0.Add(5*time.Hour+time.Duration(i)*time.Second))
	}
	res, err := e.syncer().Resync(context.Background(), syncer.ResyncOptions{UserID: u})
	if err != nil || res.Charged != 7 {
		t.Fatalf("resync of a paused user: charged %d, %v; want 7", res.Charged, err)
	}
	if st := e.syncState(u); st.Status != "paused" {
		t.Fatalf("after resync the user is %q, want still paused", st.Status)
	}
}

// A resync beside a running cycle: whichever holds the user's lease first, the other either waits
// its turn (the cycle skips a leased user) or is refused (ErrUserLeased, then run again); the
// correction is charged exactly once.
func TestResyncBesideACycle(t *testing.T) {
	t.Parallel()
	e, u, key, d0 := resyncWorld(t)
	for i := range 7 {
		e.sim.AddRequests(u, key, d0.Add(5*time.Hour+time.Duration(i)*time.Second))
	}
	e.clock.Add(time.Minute)
	a, b := e.syncer(func(o *syncer.Options) { o.WorkerID = "daemon" }), e.syncer(func(o *syncer.Options) { o.WorkerID = "operator" })
	var wg sync.WaitGroup
	var resyncErr error
	wg.Add(2)
	go func() { defer wg.Done(); e.cycle(a, syncer.CycleOptions{All: true}) }()
	go func() {
		defer wg.Done()
		_, resyncErr = b.Resync(context.Background(), syncer.ResyncOptions{UserID: u})
	}()
	wg.Wait()
	if resyncErr != nil && !errors.Is(resyncErr, syncer.ErrUserLeased) {
		t.Fatal(resyncErr)
	}
	if resyncErr != nil { // refused while the cycle held the user: run again
		if _, err := b.Resync(context.Background(), syncer.ResyncOptions{UserID: u}); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.keyCharged(u, d0); got != 17 {
		t.Fatalf("day 0 charged %d, want 17", got)
	}
	e.checkInvariants(true)
}

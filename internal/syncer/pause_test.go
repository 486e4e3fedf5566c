package syncer_test

import (
	"context"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/usage-sync/usage-sync/internal/pgtest"
	"github.com/usage-sync/usage-sync/internal/simulator"
	"github.com/usage-sync/usage-sync/internal/syncer"
)

// requestsFor counts the simulator's requests per user.
type requestsFor struct {
	mu sync.Mutex
	n  map[string]int
}

func countRequests(sim *simulator.Sim) *requestsFor {
	r := &requestsFor{n: map[string]int{}}
	sim.OnRequest(func(user, _ string, _ url.Values) { r.mu.Lock(); r.n[user]++; r.mu.Unlock() })
	return r
}

func (r *requestsFor) of(user string) int { r.mu.Lock(); defer r.mu.Unlock(); return r.n[user] }

// requestSyncAs calls public.request_sync() as PostgREST does for the signed-in user: role
// authenticated, the user's id in the JWT claims.
func requestSyncAs(ctx context.Context, e *env, user string) (bool, error) {
	tx, err := e.db.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `select set_config('role', 'authenticated', true), set_config('request.jwt.claims', $1, true)`,
		`{"sub": "`+user+`", "role": "authenticated"}`); err != nil {
		return false, err
	}
	var ok bool
	if err := tx.QueryRow(ctx, `select public.request_sync()`).Scan(&ok); err != nil {
		return false, err
	}
	return ok, tx.Commit(ctx)
}

// A paused user is taken by nothing: two cycles (one --all), a --user run (the webhook path)
// and request_sync() make no upstream request for it and post no ledger row, while the others
// sync; after resume one cycle catches up everything since, charged exactly once (I1–I4).
func TestAPausedUserIsTakenByNothingAndCatchesUpOnResume(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t, envConfig{flavor: pgtest.Supabase, sim: simulator.Config{Seed: 73, Users: 3, KeysPerUser: 2, TasksPerUser: 3, HistoryDays: 2}})
	s := e.syncer()
	if sum := e.cycle(s, syncer.CycleOptions{}); sum.Synced != 3 {
		t.Fatalf("first cycle: %s", sum.Line())
	}
	p := e.sim.Users()[1]
	got, err := e.st.Pause(ctx, nil, p, "billing dispute #42", "support-alice")
	if err != nil || got.Already || got.Interrupted != "" {
		t.Fatalf("pause: %+v, %v", got, err)
	}
	var status, by, reason string
	if err := e.db.QueryRow(ctx, `select status, paused_by, pause_reason from sync_state where user_id = $1`, p).Scan(&status, &by, &reason); err != nil ||
		status != "paused" || by != "support-alice" || reason != "billing dispute #42" {
		t.Fatalf("sync_state of the paused user: %q %q %q %v", status, by, reason, err)
	}
	if again, err := e.st.Pause(ctx, nil, p, "another reason", "bob"); err != nil || !again.Already || again.By != "support-alice" {
		t.Fatalf("pausing a paused user: %+v, %v; want nothing changed and the first pause named", again, err)
	}

	// The upstream moves on while the user is paused: new requests on a key and a new task.
	k := e.sim.Keys(p)[0]
	now := e.clock.Now()
	e.sim.AddRequests(p, k.ID, now.Add(-time.Minute), now.Add(-30*time.Second), now.Add(-time.Second))
	fin := now.Add(-time.Minute)
	e.sim.AddTask(p, simulator.Task{ID: "while-paused", CreatedAt: now.Add(-2 * time.Minute), Emails: 9, Done: 9, Finished: true, FinishedAt: &fin})
	reqs := countRequests(e.sim)
	ledger := func() int64 { return e.q(`select count(*) from credit_ledger where user_id = $1`, p) }
	before := ledger()

	for i, o := range []syncer.CycleOptions{{}, {All: true}} {
		e.clock.Add(time.Minute)
		sum := e.cycle(s, o)
		if sum.Synced != 2 || sum.Paused != 1 || len(sum.PausedUsers) != 1 || sum.PausedUsers[0] != p || !sum.OK() {
			t.Fatalf("cycle %d while paused: %s; want the 2 others synced, the paused user named, OK", i+1, sum.Line())
		}
	}
	if sum := e.cycle(s, syncer.CycleOptions{UserID: p}); sum.Due != 0 || sum.Paused != 1 || !sum.OK() {
		t.Fatalf("--user (the webhook path) on the paused user: %s", sum.Line())
	}
	if ok, err := requestSyncAs(ctx, e, p); err != nil || ok {
		t.Fatalf("request_sync() by the paused user: %v, %v; want false", ok, err)
	}
	if n := e.q(`select count(*) from sync_state where user_id = $1 and requested_at is not null`, p); n != 0 {
		t.Fatal("request_sync() marked the paused user as requested")
	}
	if ok, err := requestSyncAs(ctx, e, e.sim.Users()[2]); err != nil || !ok {
		t.Fatalf("request_sync() by a user not paused: %v, %v; want true (else the check above proves nothing)", ok, err)
	}
	// Even a request made before the pause is not served while it lasts.
	if _, err := e.db.Exec(ctx, `update sync_state set requested_at = now() where user_id = $1`, p); err != nil {
		t.Fatal(err)
	}
	if users, err := e.st.Requested(ctx, e.clock.Now, 10, 0); err != nil || len(users) != 0 {
		t.Fatalf("request poll while paused: %v, %v; want nobody", users, err)
	}
	if n := reqs.of(p); n != 0 {
		t.Fatalf("%d upstream requests for the paused user", n)
	}
	if reqs.of(e.sim.Users()[0]) == 0 {
		t.Fatal("the simulator counted no request for the others: the counter is broken")
	}
	if n := ledger(); n != before {
		t.Fatalf("%d ledger rows posted for the paused user", n-before)
	}
	if n, err := e.st.PausedUsers(ctx); err != nil || n != 1 {
		t.Fatalf("PausedUsers = %d, %v; want 1", n, err)
	}

	r, err := e.st.Resume(ctx, nil, p)
	if err != nil || r.Status != "ok" || r.Paused.By != "support-alice" {
		t.Fatalf("resume: %+v, %v; want the status it had (ok) back", r, err)
	}
	if _, err := e.st.Resume(ctx, nil, p); err == nil {
		t.Fatal("resuming a user that is not paused succeeded")
	}
	e.clock.Add(time.Minute)
	if sum := e.cycle(s, syncer.CycleOptions{}); sum.Synced != 3 || sum.Paused != 0 {
		t.Fatalf("cycle after resume: %s; want everyone synced, the resumed user too", sum.Line())
	}
	if reqs.of(p) == 0 {
		t.Fatal("the resumed user was not read")
	}
	// Σ amount = the upstream's truth since CHARGE_FROM, per key and for the tasks (I4): the
	// usage made while paused is charged, once.
	e.checkInvariants(true)
	if n := e.q(`select count(*) from credit_ledger where user_id = $1 and subject = 'while-paused'`, p); n != 1 {
		t.Fatalf("the task finished while paused has %d ledger rows, want 1", n)
	}
}

// A pause that arrives while a worker syncs the user: the worker's final transaction (after
// the pause) fails its fence, so nothing of that sync is charged after the pause; the run
// counts the user as paused, not failed or abandoned, and stays OK.
func TestAPauseFencesOutASyncInFlight(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := setup(t, envConfig{sim: simulator.Config{Seed: 74, Users: 2, KeysPerUser: 2, TasksPerUser: 3, HistoryDays: 2}})
	p := e.sim.Users()[0]
	atApply, release := make(chan struct{}), make(chan struct{})
	a := e.syncer(func(o *syncer.Options) { o.WorkerID = "a" })
	a.SetHooks(&syncer.Hooks{BeforeApply: func(_ context.Context, user string) error {
		if user == p {
			close(atApply)
			<-release
		}
		return nil
	}})
	done := make(chan syncer.Summary)
	go func() {
		sum, err := a.RunCycle(ctx, syncer.CycleOptions{})
		if err != nil {
			t.Error(err)
		}
		done <- sum
	}()
	<-atApply
	got, err := e.st.Pause(ctx, nil, p, "support hold", "ops")
	if err != nil || got.Interrupted != "a" {
		t.Fatalf("pause in flight: %+v, %v; want worker a named as interrupted", got, err)
	}
	rowsAtPause := e.q(`select count(*) from credit_ledger where user_id = $1`, p)
	close(release)
	sum := <-done
	if sum.Synced != 1 || sum.Paused != 1 || sum.Abandoned != 0 || sum.Failed != 0 || !sum.OK() {
		t.Fatalf("the run a pause interrupted: %s; want the other user synced and this one paused", sum.Line())
	}
	if n := e.q(`select count(*) from credit_ledger where user_id = $1`, p); n != rowsAtPause {
		t.Fatalf("%d ledger rows posted for the user after its pause", n-rowsAtPause)
	}
	if st := e.syncState(p); st.Status != "paused" {
		t.Fatalf("the in-flight sync overwrote the pause: %+v", st)
	}
	if len(e.events("sync.user.paused")) != 1 {
		t.Fatal("no sync.user.paused event for the sync the pause stopped")
	}
	if _, err := e.st.Resume(ctx, nil, p); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(time.Minute)
	if sum := e.cycle(e.syncer(), syncer.CycleOptions{}); sum.Synced != 2 {
		t.Fatalf("after resume: %s", sum.Line())
	}
	e.checkInvariants(true)
}

package syncer_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/usage-sync/usage-sync/internal/simulator"
	"github.com/usage-sync/usage-sync/internal/syncer"
)

func TestRepeatedCyclesChargeOnce(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: simulator.Config{Seed: 21, Users: 3, KeysPerUser: 2, TasksPerUser: 5, HistoryDays: 3}})
	s := e.syncer()
	e.cycle(s, syncer.CycleOptions{})
	rows := e.q(`select count(*) from credit_ledger`)
	if rows == 0 {
		t.Fatal("the first cycle charged nothing")
	}
	for range 3 {
		e.cycle(s, syncer.CycleOptions{All: true})
	}
	if again := e.q(`select count(*) from credit_ledger`); again != rows {
		t.Fatalf("replaying unchanged data added %d ledger rows", again-rows)
	}
	e.checkInvariants(true)
}

func TestTwoWorkersAtOnce(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: simulator.Config{Seed: 22, Users: 12, KeysPerUser: 2, TasksPerUser: 4, HistoryDays: 2, Latency: 2 * time.Millisecond}})
	// The upstream answers nobody until both workers have claimed a user, so both are in the
	// cycle whatever the scheduler does: a worker could otherwise sync everyone before the other
	// started, and the late one would rightly start a cycle of its own. Each worker holds at most
	// two users per reader (3 readers), so with 12 users the second always finds one to claim.
	var claimedA, claimedB sync.Once
	bothIn := make(chan struct{})
	var mu sync.Mutex
	in := 0
	joined := func() {
		mu.Lock()
		defer mu.Unlock()
		if in++; in == 2 {
			close(bothIn)
		}
	}
	a := e.syncer(func(o *syncer.Options) { o.WorkerID = "a" })
	b := e.syncer(func(o *syncer.Options) { o.WorkerID = "b" })
	a.SetHooks(&syncer.Hooks{AfterClaim: func(string) { claimedA.Do(joined) }})
	b.SetHooks(&syncer.Hooks{AfterClaim: func(string) { claimedB.Do(joined) }})
	giveUp := time.After(10 * time.Second)
	e.sim.OnRequest(func(string, string, url.Values) {
		select {
		case <-bothIn:
		case <-giveUp:
		}
	})
	var wg sync.WaitGroup
	sums := make([]syncer.Summary, 2)
	for i, s := range []*syncer.Syncer{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sum, err := s.RunCycle(context.Background(), syncer.CycleOptions{All: true})
			if err != nil {
				t.Error(err)
			}
			sums[i] = sum
		}()
	}
	wg.Wait()
	select {
	case <-bothIn:
	default:
		t.Fatalf("one worker never claimed a user (%+v, %+v)", sums[0], sums[1])
	}
	if got := sums[0].Synced + sums[1].Synced; got != 12 {
		t.Fatalf("two workers synced %d users between them (%+v, %+v); want each of the 12 exactly once", got, sums[0], sums[1])
	}
	e.checkInvariants(true)
}

func TestStormsOf500sAnd429sConverge(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: simulator.Config{Seed: 23, Users: 4, KeysPerUser: 2, TasksPerUser: 4, HistoryDays: 2,
		ErrorRate: 0.3, RateLimitEvery: 7, RetryAfter: 0}})
	s := e.syncer()
	for i := 0; ; i++ {
		sum := e.cycle(s, syncer.CycleOptions{All: true})
		e.checkInvariants(false)
		if sum.OK() {
			break
		}
		if i == 10 {
			t.Fatalf("not converged after 10 cycles: %+v", sum)
		}
	}
	e.checkInvariants(true)
}

// A worker that dies after reading the upstream and before committing leaves nothing behind;
// the next run charges everything once.
func TestKilledBetweenFetchAndCommit(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: simulator.Config{Seed: 24, Users: 4, KeysPerUser: 2, TasksPerUser: 4, HistoryDays: 2}})
	ctx, cancel := context.WithCancel(context.Background())
	s := e.syncer()
	var hit atomic.Int32
	s.SetHooks(&syncer.Hooks{BeforeApply: func(hctx context.Context, user string) error {
		if hit.Add(1) == 2 {
			cancel() // the process is told to stop while a user is between fetch and commit
			return hctx.Err()
		}
		return nil
	}})
	sum, err := s.RunCycle(ctx, syncer.CycleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Abandoned == 0 {
		t.Fatalf("summary %+v; want the user in flight abandoned", sum)
	}
	e.checkInvariants(false)
	if n := e.q(`select count(*) from sync_state where lease_owner is not null`); n != 0 {
		t.Fatalf("%d leases left behind after a clean shutdown", n)
	}
	e.cycle(e.syncer(), syncer.CycleOptions{All: true})
	e.checkInvariants(true)
}

func TestRevisedFinishedTask(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: simulator.Config{Seed: 25, Users: 1, KeysPerUser: 1, TasksPerUser: 0, HistoryDays: 1}})
	u := e.sim.Users()[0]
	fin := e.clock.Now().Add(-time.Hour)
	e.sim.AddTask(u, simulator.Task{ID: "rev", CreatedAt: fin.Add(-time.Minute), Emails: 10, Done: 10, Finished: true, FinishedAt: &fin,
		Results: map[string]int64{"valid": 5}})
	s := e.syncer()
	e.cycle(s, syncer.CycleOptions{})
	e.sim.UpdateTask(u, "rev", func(t *simulator.Task) { t.Results = map[string]int64{"valid": 6, "invalid": 2} })
	e.cycle(s, syncer.CycleOptions{All: true})
	if got := e.q(`select coalesce(sum(amount), 0) from credit_ledger where source = 'task_adjust' and source_id = 'rev/8'`); got != 3 {
		t.Fatalf("task_adjust rev/8 amount %d, want 3", got)
	}
	e.sim.UpdateTask(u, "rev", func(t *simulator.Task) { t.Results = map[string]int64{"valid": 6} })
	e.cycle(s, syncer.CycleOptions{All: true})
	if got := e.q(`select sum(amount) from credit_ledger where subject = 'rev'`); got != 8 {
		t.Fatalf("a revision down changed the charges to %d, want 8 (never refunded)", got)
	}
	if len(e.events("credits.revision_down")) == 0 {
		t.Fatal("no credits.revision_down log line")
	}
	e.checkInvariants(false)
}

func TestRevokedKeyKeepsItsRowAndCharges(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: simulator.Config{Seed: 26, Users: 1, KeysPerUser: 2, TasksPerUser: 0, HistoryDays: 1}})
	u := e.sim.Users()[0]
	k := e.sim.Keys(u)[0]
	s := e.syncer()
	e.cycle(s, syncer.CycleOptions{})
	charged := e.q(`select coalesce(sum(amount), 0) from credit_ledger where meta->>'key_id' = $1`, k.ID)
	// Requests after the worker's last read, then a revocation: no listing shows them again.
	e.sim.AddRequests(u, k.ID, e.clock.Now().Add(-time.Second), e.clock.Now().Add(-time.Second))
	e.sim.RevokeKey(u, k.ID)
	e.cycle(s, syncer.CycleOptions{All: true})
	if n := e.q(`select count(*) from api_keys where id = $1 and revoked_at is not null and is_active = false`, k.ID); n != 1 {
		t.Fatal("the revoked key was not kept with revoked_at")
	}
	if got := e.q(`select coalesce(sum(amount), 0) from credit_ledger where meta->>'key_id' = $1`, k.ID); got != charged {
		t.Fatalf("charges of the revoked key changed from %d to %d", charged, got)
	}
	if got := e.q(`select coalesce(sum(amount), 0) from credit_ledger where source = 'unlisted_requests'`); got != 0 {
		t.Fatalf("%d charged as unlisted before the day settled", got)
	}
	// Once the day settles, the per-purpose total charges the 2 requests no listing shows.
	today := day(e.clock.Now())
	e.settleToday()
	e.cycle(s, syncer.CycleOptions{All: true})
	rows, err := e.st.Report(context.Background(), u, today, today.AddDate(0, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].Unlisted != 2 {
		t.Fatalf("report %+v; want the 2 requests no listed key accounts for charged as unlisted", rows)
	}
	e.checkInvariants(true)
	e.checkRequestsCharged()
}

func TestBalanceSmallerThanUsage(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: simulator.Config{Seed: 27, Users: 1, KeysPerUser: 2, TasksPerUser: 3, HistoryDays: 2}, balance: 7})
	u := e.sim.Users()[0]
	e.cycle(e.syncer(), syncer.CycleOptions{})
	if b := e.q(`select credits_remaining from user_credits where user_id = $1`, u); b != 0 {
		t.Fatalf("balance %d, want 0", b)
	}
	if short := e.q(`select sum(amount - debited) from credit_ledger where user_id = $1`, u); short <= 0 {
		t.Fatal("no shortfall visible in the ledger")
	}
	if len(e.events("credits.insufficient")) == 0 {
		t.Fatal("no credits.insufficient log line")
	}
	e.checkInvariants(true)
}

func TestChargeFromMidDay(t *testing.T) {
	t.Parallel()
	now := time.Now().UTC()
	cf := now.Add(-90 * time.Minute).Truncate(time.Second).Add(123456789 * time.Nanosecond)
	e := setup(t, envConfig{sim: simulator.Config{Seed: 28, Users: 1, KeysPerUser: 1, TasksPerUser: 0, HistoryDays: 1}, opts: syncer.Options{ChargeFrom: &cf}})
	u := e.sim.Users()[0]
	k := e.sim.Keys(u)[0]
	e.sim.AddRequests(u, k.ID, cf.Add(-time.Nanosecond), cf, cf.Add(time.Nanosecond))
	e.cycle(e.syncer(), syncer.CycleOptions{})
	want := e.sim.KeyRequests(u, k.ID, cf, time.Time{})
	if got := e.q(`select coalesce(sum(amount), 0) from credit_ledger where meta->>'key_id' = $1`, k.ID); got != want {
		t.Fatalf("charged %d, want the %d requests at or after CHARGE_FROM (to the nanosecond)", got, want)
	}
	e.checkInvariants(true)
}

// Shadow mode writes what would be charged; going live at an instant charges exactly the usage
// from that instant, nothing twice and nothing lost.
func TestShadowThenLive(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: simulator.Config{Seed: 29, Users: 2, KeysPerUser: 2, TasksPerUser: 3, HistoryDays: 2}, shadow: true})
	e.cycle(e.syncer(), syncer.CycleOptions{})
	if real := e.q(`select count(*) from credit_ledger where source not like 'shadow:%'`); real != 0 {
		t.Fatalf("shadow mode wrote %d real charges", real)
	}
	if shadow := e.q(`select count(*) from credit_ledger where source like 'shadow:%'`); shadow == 0 {
		t.Fatal("shadow mode wrote nothing")
	}
	e.checkInvariants(false)

	goLive := e.clock.Now().Add(time.Millisecond)
	e.clock.Add(time.Second)
	for _, u := range e.sim.Users() {
		for _, k := range e.sim.Keys(u) {
			e.sim.AddRequests(u, k.ID, goLive.Add(-time.Millisecond), goLive, goLive.Add(time.Millisecond))
		}
	}
	e.chargeFrom = goLive
	live := e.syncer(func(o *syncer.Options) { o.ChargeEnabled = true; o.ChargeFrom = &goLive })
	e.cycle(live, syncer.CycleOptions{All: true})
	e.cycle(live, syncer.CycleOptions{All: true})
	for _, u := range e.sim.Users() {
		for _, k := range e.sim.Keys(u) {
			got := e.q(`select coalesce(sum(amount), 0) from credit_ledger where source = 'key_requests' and meta->>'key_id' = $1`, k.ID)
			if got != 2 {
				t.Fatalf("key %s: live charges %d, want the 2 requests at or after go-live", k.ID, got)
			}
		}
	}
	e.checkInvariants(true)
}

// The guard catches the upstream answering windows with lifetime totals (the "filter by
// last_used_at" reading) once a key has history: the stored days plus the window exceed the
// lifetime total. On a key's very first observation the two readings look alike (README).
func TestGuardHaltsChargingForInconsistentKeys(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: simulator.Config{Seed: 30, Users: 1, KeysPerUser: 2, TasksPerUser: 1, HistoryDays: 3}})
	u := e.sim.Users()[0]
	s := e.syncer()
	e.cycle(s, syncer.CycleOptions{})
	before := e.q(`select count(*) from credit_ledger where source = 'key_requests'`)
	for _, k := range e.sim.Keys(u) {
		e.sim.AddRequests(u, k.ID, e.clock.Now().Add(-time.Minute))
	}
	e.sim.SetLifetimeInWindows(u, true)
	sum := e.cycle(s, syncer.CycleOptions{All: true})
	if sum.Degraded != 1 || sum.Synced != 1 || !sum.OK() {
		t.Fatalf("summary %+v; want the user synced but degraded", sum)
	}
	if st := e.syncState(u); st.Status != "degraded" || st.LastError == nil || !strings.Contains(*st.LastError, "lifetime total") {
		t.Fatalf("sync_state %+v; want degraded with the reason", st)
	}
	if len(e.events("charge.key_blocked")) == 0 {
		t.Fatal("no charge.key_blocked log line")
	}
	if after := e.q(`select count(*) from credit_ledger where source = 'key_requests'`); after != before {
		t.Fatalf("%d key charges posted from inconsistent data", after-before)
	}
	e.checkInvariants(false)
	e.sim.SetLifetimeInWindows(u, false)
	e.cycle(s, syncer.CycleOptions{All: true})
	if st := e.syncState(u); st.Status != "ok" {
		t.Fatalf("after consistent data: status %s, want ok", st.Status)
	}
	if len(e.events("charge.key_unblocked")) == 0 {
		t.Fatal("no charge.key_unblocked log line")
	}
	e.checkInvariants(true)
}

// TestPropertyRandomHistoriesAndFaults draws usage histories and fault schedules from a seed,
// runs cycles through them, and checks the invariants at every step and after convergence.
// Some draws have heavy users (several task pages, one chunk each) and kill the worker between
// two chunks.
// PROPERTY_SEED reproduces a failing run; PROPERTY_RUNS sets how many seeds are drawn.
func TestPropertyRandomHistoriesAndFaults(t *testing.T) {
	t.Parallel()
	seeds := []uint64{1, 2, 3}
	if v := os.Getenv("PROPERTY_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		seeds = []uint64{s}
	} else if v := os.Getenv("PROPERTY_RUNS"); v != "" {
		n, _ := strconv.Atoi(v)
		seeds = nil
		for i := range n {
			seeds = append(seeds, uint64(i+1))
		}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewPCG(seed, 0x5eed))
			users := 2 + r.IntN(3)
			balances := map[string]int64{}
			// One user set in three is heavy: several task pages, applied one chunk per page.
			tasks := r.IntN(5)
			if r.IntN(3) == 0 {
				tasks = 101 + r.IntN(200)
			}
			// One draw in three starts as a shadow trial with CHARGE_FROM empty and goes live at a
			// drawn step: each user is then charged from its go-live, never for the trial.
			switchAt := -1
			if r.IntN(3) == 0 {
				switchAt = 1 + r.IntN(4)
			}
			e := setup(t, envConfig{sim: simulator.Config{Seed: int64(seed), Users: users, KeysPerUser: 1 + r.IntN(3), TasksPerUser: tasks,
				HistoryDays: 1 + r.IntN(3), RetryAfter: 0}, balance: int64(50 + r.IntN(2000)), balances: balances,
				shadow: switchAt > 0, noChargeFrom: switchAt > 0})
			s := e.syncer()
			s.SetChunkPages(1)
			ids := e.sim.Users()
			burners := 0
			for step := range 6 {
				if step == switchAt {
					s = e.syncer(func(o *syncer.Options) { o.ChargeEnabled = true })
					s.SetChunkPages(1)
				}
				for _, u := range ids {
					// Revoked keys: a key created, used and revoked between two cycles (no listing
					// ever shows it), or a listed key revoked after requests no read saw.
					switch r.IntN(6) {
					case 0:
						burners++
						id := fmt.Sprintf("burner-%d", burners)
						e.sim.AddKey(u, simulator.Key{ID: id, Purpose: e.sim.Keys(u)[0].Purpose, CreatedAt: e.clock.Now().Add(-time.Hour)})
						at := make([]time.Time, 1+r.IntN(30))
						for i := range at {
							at[i] = e.clock.Now().Add(-time.Duration(r.IntN(3600)) * time.Second)
						}
						e.sim.AddRequests(u, id, at...)
						e.sim.RevokeKey(u, id)
					case 1:
						if k := e.sim.Keys(u)[0]; !k.Revoked {
							e.sim.AddRequests(u, k.ID, e.clock.Now().Add(-time.Second))
							e.sim.RevokeKey(u, k.ID)
						}
					}
					switch r.IntN(6) {
					case 0:
						e.sim.SetFault(u, simulator.Fault{Status: 500, Times: 1 + r.IntN(4)})
					case 1:
						e.sim.SetFault(u, simulator.Fault{Status: 429, Times: 1 + r.IntN(2)})
					case 2:
						e.sim.SetFault(u, simulator.Fault{BadJSON: true, Times: 1})
					case 3:
						e.sim.SetFault(u, simulator.Fault{Status: 401, Times: 1})
					default:
						e.sim.ClearFault(u)
					}
					for _, k := range e.sim.Keys(u) {
						if !k.Revoked && r.IntN(2) == 0 {
							at := make([]time.Time, r.IntN(20))
							for i := range at {
								at[i] = e.clock.Now().Add(-time.Duration(r.IntN(3600)) * time.Second)
							}
							e.sim.AddRequests(u, k.ID, at...)
						}
					}
				}
				ctx, cancel := context.WithCancel(context.Background())
				killAt := int32(-1)
				if r.IntN(3) == 0 {
					killAt = int32(r.IntN(users))
				}
				// A kill between two chunks of a heavy user: after the chunkKill-th chunk of the cycle.
				chunkKill := int32(-1)
				if r.IntN(3) == 0 {
					chunkKill = int32(1 + r.IntN(3))
				}
				var n, chunks atomic.Int32
				s.SetHooks(&syncer.Hooks{
					BeforeApply: func(hctx context.Context, _ string) error {
						if n.Add(1)-1 == killAt {
							cancel()
							return errors.Join(hctx.Err(), context.Canceled)
						}
						return nil
					},
					AfterChunk: func(hctx context.Context, _ string, _ int) error {
						if chunks.Add(1) == chunkKill {
							cancel()
							return errors.Join(hctx.Err(), context.Canceled)
						}
						return nil
					},
				})
				if _, err := s.RunCycle(ctx, syncer.CycleOptions{All: true}); err != nil {
					t.Fatalf("step %d: %v", step, err)
				}
				cancel()
				e.checkInvariants(false)
				e.clock.Add(time.Duration(r.IntN(600)) * time.Second)
			}
			for _, u := range ids {
				e.sim.ClearFault(u)
			}
			s.SetHooks(nil)
			e.converge(s)
			e.checkInvariants(true)
			// Once today settles, every request is charged, revoked keys' through unlisted_requests.
			e.settleToday()
			e.converge(s)
			e.checkInvariants(true)
			e.checkRequestsCharged()
			if t.Failed() {
				t.Logf("reproduce with PROPERTY_SEED=%d", seed)
			}
		})
	}
}

// converge runs cycles until one fails nobody and every user's last sync succeeded: a cycle a
// killed run left open is joined, and takes only the users that run did not reach.
func (e *env) converge(s *syncer.Syncer) {
	e.t.Helper()
	for i := 0; ; i++ {
		sum := e.cycle(s, syncer.CycleOptions{All: true})
		if sum.OK() && e.q(`select count(*) from sync_state where status not in ('ok', 'degraded')`) == 0 {
			return
		}
		if i == 5 {
			e.t.Fatal("did not converge without faults")
		}
	}
}

// A lease shorter than one user's sync is renewed while the sync runs, so another worker never
// takes a user over from a live one. Worker a holds a user past its original lease (four
// renewals at a third of the TTL each), then worker b tries that very user and must skip it.
func TestLeaseIsRenewedDuringALongSync(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: simulator.Config{Seed: 33, Users: 1, KeysPerUser: 1, TasksPerUser: 1, HistoryDays: 1}})
	u := e.sim.Users()[0]
	renewed := make(chan struct{}, 100)
	release := make(chan struct{})
	a := e.syncer(func(o *syncer.Options) { o.WorkerID = "a"; o.LeaseTTL = 150 * time.Millisecond })
	a.SetHooks(&syncer.Hooks{
		BeforeApply: func(context.Context, string) error { <-release; return nil },
		AfterRenew:  func(string) { renewed <- struct{}{} },
	})
	done := make(chan syncer.Summary)
	go func() {
		sum, _ := a.RunCycle(context.Background(), syncer.CycleOptions{UserID: u})
		done <- sum
	}()
	for i := range 4 {
		select {
		case <-renewed:
		case <-time.After(10 * time.Second):
			t.Fatalf("the lease was renewed only %d times while the user was being synced", i)
		}
	}
	e.checkLeaseHeld(u, func() { close(release) }, done)
}

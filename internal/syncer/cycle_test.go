package syncer_test

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/usage-sync/usage-sync/internal/simulator"
	"github.com/usage-sync/usage-sync/internal/store"
	"github.com/usage-sync/usage-sync/internal/syncer"
)

// Three workers on one database split a cycle: each user is taken exactly once, counted by the
// database itself (lease_token is bumped on every claim), however late a worker joins. Worker a
// starts alone and stops before applying its fifth user; b and c start only then and run to
// the end while a still holds its users, so they must skip those (leased, not failed) and must
// not take again the users a already finished. One user fails upstream: it fails once, visibly,
// and nobody else is held up (I5).
func TestThreeWorkersSplitACycle(t *testing.T) {
	t.Parallel()
	const users = 24
	e := setup(t, envConfig{sim: simulator.Config{Seed: 61, Users: users, KeysPerUser: 2, TasksPerUser: 2, HistoryDays: 2}})
	broken := e.sim.Users()[7]
	e.sim.SetFault(broken, simulator.Fault{Status: 401})

	var (
		mu      sync.Mutex
		applied = map[string]int{}
	)
	count := func(user string) int {
		mu.Lock()
		defer mu.Unlock()
		applied[user]++
		n := 0
		for _, c := range applied {
			n += c
		}
		return n
	}
	aStopped := make(chan struct{})
	var stopOnce sync.Once
	release := make(chan struct{})
	a := e.syncer(func(o *syncer.Options) { o.WorkerID = "a"; o.Concurrency = 2 })
	a.SetHooks(&syncer.Hooks{BeforeApply: func(_ context.Context, user string) error {
		if count(user) >= 5 {
			stopOnce.Do(func() { close(aStopped) })
			<-release
		}
		return nil
	}})
	hook := &syncer.Hooks{BeforeApply: func(_ context.Context, user string) error { count(user); return nil }}
	b := e.syncer(func(o *syncer.Options) { o.WorkerID = "b"; o.Concurrency = 2 })
	c := e.syncer(func(o *syncer.Options) { o.WorkerID = "c"; o.Concurrency = 2 })
	b.SetHooks(hook)
	c.SetHooks(hook)

	run := func(s *syncer.Syncer, out *syncer.Summary, wg *sync.WaitGroup) {
		defer wg.Done()
		sum, err := s.RunCycle(context.Background(), syncer.CycleOptions{Trigger: "once"})
		if err != nil {
			t.Error(err)
		}
		*out = sum
	}
	var sa, sb, sc syncer.Summary
	var aw, bc sync.WaitGroup
	aw.Add(1)
	go run(a, &sa, &aw)
	select {
	case <-aStopped:
	case <-time.After(30 * time.Second):
		t.Fatal("worker a never reached its fifth user")
	}
	bc.Add(2)
	go run(b, &sb, &bc)
	go run(c, &sc, &bc)
	bc.Wait()
	close(release)
	aw.Wait()

	if sa.Cycle == 0 || sb.Cycle != sa.Cycle || sc.Cycle != sa.Cycle {
		t.Fatalf("cycles a=%d b=%d c=%d; want b and c to join a's", sa.Cycle, sb.Cycle, sc.Cycle)
	}
	for _, s := range []syncer.Summary{sb, sc} {
		if s.Skipped == 0 {
			t.Errorf("%s: skipped nothing while worker a held users: %+v", s.Line(), s)
		}
	}
	if n := e.q(`select count(*) from sync_state where lease_token <> 1`); n != 0 {
		t.Fatalf("%d users were claimed other than exactly once in the cycle (a %+v, b %+v, c %+v)", n, sa, sb, sc)
	}
	synced, failed := sa.Synced+sb.Synced+sc.Synced, sa.Failed+sb.Failed+sc.Failed
	if synced != users-1 || failed != 1 {
		t.Fatalf("synced %d, failed %d between the workers; want %d and 1", synced, failed, users-1)
	}
	for u, n := range applied {
		if n != 1 {
			t.Errorf("user %s applied %d times in one cycle", u, n)
		}
	}
	for _, s := range []syncer.Summary{sa, sb, sc} {
		if s.Failed == 0 && !s.OK() {
			t.Errorf("a run that only synced and skipped is not OK: %+v", s)
		}
	}
	if st := e.syncState(broken); st.Status != "error" || st.ConsecutiveFailures != 1 {
		t.Fatalf("the broken user's sync_state: %+v; want one visible failure", st)
	}
	e.checkInvariants(false)

	// The next cycle, all three starting together: again each due user exactly once.
	a.SetHooks(nil)
	b.SetHooks(nil)
	c.SetHooks(nil)
	bc.Add(3)
	go run(a, &sa, &bc)
	go run(b, &sb, &bc)
	go run(c, &sc, &bc)
	bc.Wait()
	// Together they took every user not backing off exactly once more, unless one started only
	// after the others had finished: then it may run a cycle of its own.
	if sa.Cycle == sb.Cycle && sb.Cycle == sc.Cycle {
		if n := e.q(`select count(*) from sync_state where user_id <> $1 and lease_token <> 2`, broken); n != 0 {
			t.Fatalf("%d users were not claimed exactly once in the second cycle", n)
		}
	}
	if sa.Synced+sb.Synced+sc.Synced < users-1 || sa.Failed+sb.Failed+sc.Failed != 0 {
		t.Fatalf("second cycle: a %+v, b %+v, c %+v", sa, sb, sc)
	}
	e.sim.ClearFault(broken)
	if sum := e.cycle(a, syncer.CycleOptions{UserID: broken}); sum.Synced != 1 {
		t.Fatalf("--user on the recovered user: %+v", sum)
	}
	e.checkInvariants(true)
}

// A --user run takes its user once even with spare workers, and leaves the shared cycle alone.
func TestUserRunTakesItsUserOnce(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: simulator.Config{Seed: 62, Users: 2, KeysPerUser: 1, TasksPerUser: 1, HistoryDays: 1}})
	u := e.sim.Users()[0]
	s := e.syncer(func(o *syncer.Options) { o.Concurrency = 4 })
	if sum := e.cycle(s, syncer.CycleOptions{UserID: u}); sum.Due != 1 || sum.Synced != 1 || sum.Cycle != 0 {
		t.Fatalf("--user: %+v; want its one user synced once, outside any shared cycle", sum)
	}
	if n := e.q(`select lease_token from sync_state where user_id = $1`, u); n != 1 {
		t.Fatalf("--user claimed its user %d times", n)
	}
	// A plain cycle after it syncs both users: the --user run did not mark a cycle.
	if sum := e.cycle(s, syncer.CycleOptions{}); sum.Synced != 2 {
		t.Fatalf("plain cycle after --user: %+v", sum)
	}
	// And another --user run syncs the user again: a webhook says it changed.
	if sum := e.cycle(s, syncer.CycleOptions{UserID: u}); sum.Synced != 1 {
		t.Fatalf("second --user: %+v", sum)
	}
}

// A 30-day outage: key usage on each of the last 30 days and CHARGE_FROM at the oldest. Each
// cycle reads the oldest MAX_BACKFILL_DAYS unsettled days and today; after enough cycles every
// day has its rows and everything is charged exactly once (I1–I4). The clock stands at a fixed
// time of day so the settle lag falls the same way on every run.
func TestLongOutageCatchesUpOldestFirst(t *testing.T) {
	t.Parallel()
	start := time.Date(2031, 5, 20, 10, 0, 0, 0, time.UTC)
	cf := time.Date(2031, 4, 20, 0, 0, 0, 0, time.UTC) // the day of the oldest request
	e := setup(t, envConfig{
		start: start,
		sim:   simulator.Config{Seed: 63, Users: 2, KeysPerUser: 2, TasksPerUser: 2, HistoryDays: 30},
		opts:  syncer.Options{MaxBackfillDays: 7, ChargeFrom: &cf},
	})
	s := e.syncer()
	today := day(start)
	daysWithRows := func() int64 {
		return e.q(`select count(distinct period_start) from api_usage where origin = 'usage-sync' and api_key_id is not null`)
	}
	settled := func() time.Time {
		var d time.Time
		if err := e.db.QueryRow(context.Background(),
			`select min(settled_through)::timestamp at time zone 'UTC' from sync_state`).Scan(&d); err != nil {
			t.Fatal(err)
		}
		return d.UTC()
	}
	// Cycle k settles the days from CHARGE_FROM's through 7k−1 days later, and reads today.
	for k := 1; k <= 4; k++ {
		if sum := e.cycle(s, syncer.CycleOptions{}); sum.Synced != 2 || !sum.OK() {
			t.Fatalf("cycle %d: %+v", k, sum)
		}
		if got, want := settled(), cf.AddDate(0, 0, 7*k); !got.Equal(want) {
			t.Fatalf("cycle %d: settled through %s, want %s", k, got.Format(time.DateOnly), want.Format(time.DateOnly))
		}
		if got, want := daysWithRows(), int64(7*k+1); got != want {
			t.Fatalf("cycle %d: api_usage rows on %d days, want %d (the oldest %d and today)", k, got, want, 7*k)
		}
		e.checkInvariants(false)
	}
	// The fifth reads the last two days before today and settles through today.
	e.cycle(s, syncer.CycleOptions{})
	if got := settled(); !got.Equal(today) {
		t.Fatalf("after the backlog: settled through %s, want %s", got.Format(time.DateOnly), today.Format(time.DateOnly))
	}
	if got, want := daysWithRows(), int64(today.Sub(cf)/(24*time.Hour))+1; got != want {
		t.Fatalf("api_usage rows on %d days, want every one of the %d days since CHARGE_FROM", got, want)
	}
	for _, u := range e.sim.Users() {
		e.assertMirrors(u)
	}
	e.checkInvariants(true)
	rows := e.q(`select count(*) from credit_ledger`)
	e.cycle(s, syncer.CycleOptions{})
	if again := e.q(`select count(*) from credit_ledger`); again != rows {
		t.Fatalf("a cycle after catching up added %d ledger rows", again-rows)
	}
}

// Everything that decides time runs on the syncer's clock, in Go and in SQL: here it stands
// years away from the real time and the database's now(). It crosses a day boundary, then the
// settle lag; a failure's backoff and the lease are measured on it too.
func TestFakeClockDayBoundaryAndSettleLag(t *testing.T) {
	t.Parallel()
	d := time.Date(2033, 2, 14, 0, 0, 0, 0, time.UTC)
	e := setup(t, envConfig{
		start: d.Add(22 * time.Hour),
		sim:   simulator.Config{Seed: 64, Users: -1, KeysPerUser: -1, TasksPerUser: -1},
		opts:  syncer.Options{ChargeFrom: &d, LeaseTTL: time.Minute, FailureBackoffBase: time.Hour, FailureBackoffMax: time.Hour},
	})
	const u = "6f1c7a52-3b6e-4d0e-9a51-2f0c1b7d9e01"
	e.sim.AddUser(u)
	e.sim.AddKey(u, simulator.Key{ID: "k1", Purpose: "zapier", CreatedAt: d.Add(-time.Hour)})
	e.sim.AddRequests(u, "k1", d.Add(21*time.Hour), d.Add(21*time.Hour+time.Minute))
	e.addProfile(u, 1000)

	s := e.syncer()
	s.SetHooks(&syncer.Hooks{BeforeApply: func(ctx context.Context, user string) error {
		// The lease runs on the clock: claimed at its now, for SYNC_LEASE_TTL.
		if n := e.q(`select count(*) from sync_state where user_id = $1 and lease_expires_at = $2`, user, e.clock.Now().Add(time.Minute)); n != 1 {
			t.Errorf("lease of %s does not expire at the clock's now + TTL", user)
		}
		return nil
	}})
	at := func(sql string) time.Time {
		var v time.Time
		if err := e.db.QueryRow(context.Background(), sql, u).Scan(&v); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return v.UTC()
	}
	settledThrough := func() *time.Time {
		var v *time.Time
		if err := e.db.QueryRow(context.Background(),
			`select settled_through::timestamp at time zone 'UTC' from sync_state where user_id = $1`, u).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	charged := func() int64 {
		return e.q(`select coalesce(sum(amount), 0) from credit_ledger where user_id = $1`, u)
	}

	// 22:00 on day d: enrolled, attempted and due on the clock; d read, not settled.
	if sum := e.cycle(s, syncer.CycleOptions{}); sum.Synced != 1 {
		t.Fatalf("first cycle: %+v", sum)
	}
	now := e.clock.Now()
	if got := at(`select enrolled_at from sync_state where user_id = $1`); !got.Equal(now) {
		t.Fatalf("enrolled_at %s, want the clock's %s", got, now)
	}
	if got := at(`select last_success_at from sync_state where user_id = $1`); !got.Equal(now) {
		t.Fatalf("last_success_at %s, want the clock's %s", got, now)
	}
	if n := e.q(`select count(*) from usage_sync.cycle where started_at = $1`, now); n != 1 {
		t.Fatalf("the cycle did not start at the clock's %s", now)
	}
	if st := settledThrough(); st != nil || charged() != 2 {
		t.Fatalf("at 22:00: settled through %v, charged %d; want nothing settled, 2 charged", st, charged())
	}

	// Across midnight: d and d+1 are read; d is not settled before 02:00.
	e.sim.AddRequests(u, "k1", d.Add(23*time.Hour+30*time.Minute), d.Add(24*time.Hour+10*time.Minute))
	e.clock.Add(2*time.Hour + 30*time.Minute) // 00:30 on d+1
	e.cycle(s, syncer.CycleOptions{})
	if st := settledThrough(); st != nil || charged() != 4 {
		t.Fatalf("at 00:30: settled through %v, charged %d; want nothing settled, 4 charged", st, charged())
	}
	if n := e.q(`select count(*) from api_usage where api_key_id = 'k1' and period_start in ($1, $2)`, d, d.AddDate(0, 0, 1)); n != 2 {
		t.Fatalf("%d day rows after midnight, want d and d+1", n)
	}
	// One minute before the lag ends, still unsettled; at 02:00 d is settled.
	e.clock.Add(89 * time.Minute) // 01:59
	e.cycle(s, syncer.CycleOptions{})
	if st := settledThrough(); st != nil {
		t.Fatalf("at 01:59: settled through %v, want nothing yet", st)
	}
	e.clock.Add(time.Minute) // 02:00
	e.cycle(s, syncer.CycleOptions{})
	if st := settledThrough(); st == nil || !st.Equal(d.AddDate(0, 0, 1)) {
		t.Fatalf("at 02:00: settled through %v, want %s", st, d.AddDate(0, 0, 1).Format(time.DateOnly))
	}

	// A failure backs off on the clock: not due until the clock passes next_attempt_at.
	e.sim.SetFault(u, simulator.Fault{Status: 401})
	if sum := e.cycle(s, syncer.CycleOptions{}); sum.Failed != 1 {
		t.Fatalf("faulty cycle: %+v", sum)
	}
	next := at(`select next_attempt_at from sync_state where user_id = $1`)
	if lo, hi := e.clock.Now().Add(48*time.Minute), e.clock.Now().Add(72*time.Minute); next.Before(lo) || next.After(hi) {
		t.Fatalf("next attempt at %s, want the clock's now + 1h ± 20%%", next)
	}
	e.sim.ClearFault(u)
	e.clock.Add(47 * time.Minute)
	if sum := e.cycle(s, syncer.CycleOptions{}); sum.Due != 0 {
		t.Fatalf("a backing-off user was taken before its time on the clock: %+v", sum)
	}
	e.clock.Add(26 * time.Minute)
	if sum := e.cycle(s, syncer.CycleOptions{}); sum.Synced != 1 {
		t.Fatalf("the user was not due once the clock passed its backoff: %+v", sum)
	}
	e.checkInvariants(true)
}

// The task side runs on the same clock, years from the database's: a task first seen finished
// without a finished_at is stamped with the clock's now, and the revision sweep is due on the
// clock (REVISION_INTERVAL after the last one), not on the database's now().
func TestFakeClockTasksAndRevisionSweeps(t *testing.T) {
	t.Parallel()
	d := time.Date(2033, 2, 14, 0, 0, 0, 0, time.UTC)
	e := setup(t, envConfig{
		start: d.Add(12 * time.Hour),
		sim:   simulator.Config{Seed: 65, Users: -1, KeysPerUser: -1, TasksPerUser: -1},
		opts:  syncer.Options{ChargeFrom: &d, RevisionInterval: time.Hour},
	})
	const u = "6f1c7a52-3b6e-4d0e-9a51-2f0c1b7d9e02"
	e.sim.AddUser(u)
	e.addProfile(u, 1000)
	e.sim.AddTask(u, simulator.Task{ID: taskID(0), CreatedAt: d.Add(11 * time.Hour), Emails: 2, Done: 2, Finished: true,
		Results: map[string]int64{"valid": 2}})
	at := func(sql string) time.Time {
		t.Helper()
		var v time.Time
		if err := e.db.QueryRow(context.Background(), sql, u).Scan(&v); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return v.UTC()
	}
	s := e.syncer()
	e.cycle(s, syncer.CycleOptions{All: true})
	first := e.clock.Now()
	if got := at(`select finished_at from tasks where user_id = $1`); !got.Equal(first) {
		t.Fatalf("finished_at %s, want the clock's %s (first seen finished)", got, first)
	}
	if got := at(`select revision_swept_at from sync_state where user_id = $1`); !got.Equal(first) {
		t.Fatalf("revision_swept_at %s, want the clock's %s", got, first)
	}
	e.clock.Add(59 * time.Minute)
	e.cycle(s, syncer.CycleOptions{All: true})
	if got := at(`select revision_swept_at from sync_state where user_id = $1`); !got.Equal(first) {
		t.Fatalf("swept again at %s, within REVISION_INTERVAL of %s on the clock", got, first)
	}
	e.clock.Add(time.Minute)
	e.cycle(s, syncer.CycleOptions{All: true})
	if got, want := at(`select revision_swept_at from sync_state where user_id = $1`), e.clock.Now(); !got.Equal(want) {
		t.Fatalf("revision_swept_at %s once REVISION_INTERVAL passed on the clock, want %s", got, want)
	}
	e.checkInvariants(true)
}

// A sync that outlasts its cycle keeps the cycle open only for the join window: a run starting
// within it joins (a late replica: it claims nothing, the user in flight is skipped); a run
// starting after it, at the next tick, starts a new cycle and syncs the other users again rather
// than idling until the long sync ends. Worker a (one at a time) takes the users in claim order,
// user id order here, and holds the last one. The lease (2 min) outlives the window (1 min).
func TestALongSyncDoesNotHoldTheNextCycle(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: simulator.Config{Seed: 65, Users: 4, KeysPerUser: 1, TasksPerUser: 1, HistoryDays: 1}})
	ids := e.sim.Users()
	sort.Strings(ids)
	heavy := ids[len(ids)-1]
	holding, release := make(chan struct{}), make(chan struct{})
	finished := make(chan string, len(ids))
	a := e.syncer(func(o *syncer.Options) { o.WorkerID = "a"; o.Concurrency = 1 })
	a.SetHooks(&syncer.Hooks{
		BeforeApply: func(_ context.Context, user string) error {
			if user == heavy {
				// The others' final transactions run on a writer, beside this read: wait until
				// they have ended, so only the held user is leased when b looks.
				for range len(ids) - 1 {
					<-finished
				}
				close(holding)
				<-release
			}
			return nil
		},
		AfterFinish: func(user string) { finished <- user },
	})
	done := make(chan syncer.Summary)
	go func() {
		sum, err := a.RunCycle(context.Background(), syncer.CycleOptions{})
		if err != nil {
			t.Error(err)
		}
		done <- sum
	}()
	<-holding
	b := e.syncer(func(o *syncer.Options) { o.WorkerID = "b" })
	late := e.cycle(b, syncer.CycleOptions{})
	e.clock.Add(61 * time.Second)
	sb := e.cycle(b, syncer.CycleOptions{})
	close(release)
	sa := <-done
	if sa.Synced != 4 {
		t.Fatalf("a: %+v; want all 4 users, the held one last", sa)
	}
	if late.Cycle != sa.Cycle || late.Due != 0 || late.Skipped != 1 || !late.OK() {
		t.Fatalf("b within the join window: %+v (a's cycle %d); want a's cycle joined, nothing to take, the held user skipped", late, sa.Cycle)
	}
	if sb.Cycle == sa.Cycle || sb.Synced != 3 || sb.Skipped != 1 || !sb.OK() {
		t.Fatalf("b: %+v (a's cycle %d); want a new cycle syncing the 3 others and skipping the held user", sb, sa.Cycle)
	}
	e.checkInvariants(true)
}

// Cycles, claims and the clock's parameters work through Supabase's transaction pooler mode too
// (no prepared statements: every parameter goes as text in the simple protocol).
func TestCyclesInTransactionPoolerMode(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: simulator.Config{Seed: 66, Users: 3, KeysPerUser: 1, TasksPerUser: 1, HistoryDays: 1}})
	st, err := store.Open(context.Background(), e.dsn, store.Options{MaxConns: 4, PoolMode: "transaction"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := e.newSyncer(st, e.client(), e.opts)
	first := e.cycle(s, syncer.CycleOptions{})
	second := e.cycle(s, syncer.CycleOptions{})
	if first.Synced != 3 || second.Synced != 3 || second.Cycle != first.Cycle+1 {
		t.Fatalf("cycles in transaction mode: %+v then %+v; want 3 users each, in consecutive cycles", first, second)
	}
	if sum := e.cycle(s, syncer.CycleOptions{UserID: e.sim.Users()[0]}); sum.Synced != 1 {
		t.Fatalf("--user in transaction mode: %+v", sum)
	}
	e.checkInvariants(true)
}

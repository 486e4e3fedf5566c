package syncer_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/usage-sync/usage-sync/internal/simulator"
	"github.com/usage-sync/usage-sync/internal/syncer"
	"github.com/usage-sync/usage-sync/internal/upstream"
)

// requestLog counts the simulator's authenticated requests per user and kind.
type requestLog struct {
	mu    sync.Mutex
	calls map[string][]string // user → "lifetime" | "window" | "purposes" | "tasks"
}

func (e *env) countRequests() *requestLog {
	rl := &requestLog{calls: map[string][]string{}}
	e.sim.OnRequest(func(user, path string, q url.Values) {
		kind := "other"
		switch {
		case strings.HasSuffix(path, "/api-keys") && q.Get("from") == "":
			kind = "lifetime"
		case strings.HasSuffix(path, "/api-keys"):
			kind = "window"
		case strings.HasSuffix(path, "/api-usage"):
			kind = "purposes"
		case strings.HasSuffix(path, "/tasks"):
			kind = "tasks"
		}
		rl.mu.Lock()
		rl.calls[user] = append(rl.calls[user], kind)
		rl.mu.Unlock()
	})
	return rl
}

// take returns and forgets what user requested so far.
func (rl *requestLog) take(user string) []string {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	c := rl.calls[user]
	delete(rl.calls, user)
	return c
}

// quietClock moves the clock to at least 03:00 UTC, so no day of the data set is waiting for its
// settling read (SETTLE_LAG is 2 h) when a test wants a steady cycle.
func (e *env) quietClock() {
	if h := e.clock.Now().Hour(); h < 3 {
		e.clock.Add(time.Duration(3-h) * time.Hour)
	}
}

// A user with history and nothing new costs the lifetime listing and one task page; usage on a
// key makes the next sync read what moved, and charges it; then it is quiet again.
func TestQuietUserCostsTwoRequests(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: simulator.Config{Seed: 61, Users: 2, KeysPerUser: 3, TasksPerUser: -1, HistoryDays: 3}})
	e.quietClock()
	ids := e.sim.Users()
	u := ids[0]
	// A long history of recent, finished tasks: more than one page, all within REVISION_WINDOW.
	for i := range 250 {
		at := e.clock.Now().Add(-10*time.Hour + time.Duration(i)*time.Minute)
		e.sim.AddTask(u, simulator.Task{ID: taskID(i), CreatedAt: at, Emails: 3, Done: 3, Finished: true, FinishedAt: &at,
			Results: map[string]int64{"valid": 3}})
	}
	rl := e.countRequests()
	s := e.syncer(func(o *syncer.Options) { o.RevisionInterval = time.Hour })
	e.cycle(s, syncer.CycleOptions{All: true})
	if cold := rl.take(u); len(cold) < 6 {
		t.Fatalf("cold sync made %d requests (%v); want the windows read", len(cold), cold)
	}
	rl.take(ids[1])
	for i := range 3 {
		e.clock.Add(5 * time.Minute)
		e.cycle(s, syncer.CycleOptions{All: true})
		for _, id := range ids {
			if got := rl.take(id); len(got) > 2 {
				t.Fatalf("steady cycle %d: user %s made %d requests %v; want at most 2", i, id, len(got), got)
			}
		}
	}

	// Usage: the next sync reads the windows and the lifetime listing again, and charges it.
	k := e.sim.Keys(u)[0]
	e.sim.AddRequests(u, k.ID, e.clock.Now().Add(-time.Minute), e.clock.Now().Add(-30*time.Second))
	e.clock.Add(time.Minute)
	e.cycle(s, syncer.CycleOptions{All: true})
	got := rl.take(u)
	if n := countKind(got, "lifetime"); n != 2 || countKind(got, "window") == 0 || countKind(got, "purposes") == 0 {
		t.Fatalf("after usage the sync made %v; want the windows between two lifetime listings", got)
	}
	e.checkInvariants(true)
	e.clock.Add(time.Minute)
	e.cycle(s, syncer.CycleOptions{All: true})
	if got := rl.take(u); len(got) > 2 {
		t.Fatalf("quiet again after usage: %d requests %v", len(got), got)
	}
	e.assertMirrors(u)
	e.checkInvariants(true)
}

func countKind(calls []string, kind string) int {
	n := 0
	for _, c := range calls {
		if c == kind {
			n++
		}
	}
	return n
}

// A key used while a sync read its windows (after today's window, before the second lifetime
// listing) makes the two listings disagree: the next sync must read the windows again rather
// than trust that nothing moved, or that request would never be charged.
func TestKeyMovedDuringReadsIsReRead(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: simulator.Config{Seed: 62, Users: 1, KeysPerUser: 2, TasksPerUser: 1, HistoryDays: 2}})
	e.quietClock()
	u := e.sim.Users()[0]
	k := e.sim.Keys(u)[0]
	var lifetimes atomic.Int32
	var mu sync.Mutex
	var calls []string
	e.sim.OnRequest(func(user, path string, q url.Values) {
		mu.Lock()
		calls = append(calls, path+"?"+q.Get("from"))
		mu.Unlock()
		if strings.HasSuffix(path, "/api-keys") && q.Get("from") == "" && lifetimes.Add(1) == 2 {
			// The second lifetime listing of the first sync: today's window was already read.
			e.sim.AddRequests(u, k.ID, e.clock.Now().Add(-time.Second))
		}
	})
	s := e.syncer(func(o *syncer.Options) { o.RevisionInterval = time.Hour })
	e.cycle(s, syncer.CycleOptions{All: true})
	if fp := e.q(`select count(*) from sync_state where user_id = $1 and reads_fingerprint is null`, u); fp != 1 {
		t.Fatal("the listings disagreed, yet the sync recorded them as consistent")
	}
	mu.Lock()
	calls = nil
	mu.Unlock()
	e.clock.Add(time.Minute)
	e.cycle(s, syncer.CycleOptions{All: true})
	mu.Lock()
	n := len(calls)
	mu.Unlock()
	if n <= 2 {
		t.Fatalf("the sync after a key moved mid-read made %d requests: it skipped the windows", n)
	}
	e.checkInvariants(true)
	e.assertMirrors(u)
}

// A quiet user's day still settles: the first sync at or after day end + SETTLE_LAG reads that
// day once (and only that day), then the user is back to two requests.
func TestQuietUserDaySettlesAfterLag(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: simulator.Config{Seed: 63, Users: 1, KeysPerUser: 2, TasksPerUser: 2, HistoryDays: 2}})
	e.quietClock()
	u := e.sim.Users()[0]
	rl := e.countRequests()
	s := e.syncer(func(o *syncer.Options) { o.RevisionInterval = time.Hour })
	e.cycle(s, syncer.CycleOptions{All: true})
	today := day(e.clock.Now())
	// Usage late today, read by a full sync; then a quiet one.
	k := e.sim.Keys(u)[0]
	e.sim.AddRequests(u, k.ID, e.clock.Now().Add(-time.Second))
	e.cycle(s, syncer.CycleOptions{All: true})
	e.cycle(s, syncer.CycleOptions{All: true})
	rl.take(u)
	if got := e.q(`select count(*) from sync_state where user_id = $1 and settled_through = $2::date`, u, today); got != 1 {
		t.Fatalf("today settled too early or yesterday not settled")
	}

	// Past midnight but within the lag: still quiet, today is not settled yet.
	next := today.Add(24 * time.Hour)
	e.clock.Add(next.Add(time.Hour).Sub(e.clock.Now()))
	e.cycle(s, syncer.CycleOptions{All: true})
	if got := rl.take(u); len(got) > 2 {
		t.Fatalf("within the settle lag a quiet user made %v", got)
	}
	// At day end + lag: exactly one settling read of that day (keys and per-purpose totals).
	e.clock.Add(next.Add(2 * time.Hour).Sub(e.clock.Now()))
	e.cycle(s, syncer.CycleOptions{All: true})
	got := rl.take(u)
	if countKind(got, "window") != 1 || countKind(got, "purposes") != 1 || countKind(got, "lifetime") != 1 {
		t.Fatalf("settling sync made %v; want one window and one per-purpose read of the settled day", got)
	}
	if n := e.q(`select count(*) from sync_state where user_id = $1 and settled_through = $2::date`, u, next); n != 1 {
		t.Fatal("the day did not settle after its lag")
	}
	e.cycle(s, syncer.CycleOptions{All: true})
	if got := rl.take(u); len(got) > 2 {
		t.Fatalf("after settling, a quiet user made %v", got)
	}
	e.assertMirrors(u)
	e.checkInvariants(true)
}

// A worker killed between two chunks of a heavy user's pass leaves chunks committed and the
// watermark where it was: the next sync finds those tasks done, charges nothing twice and loses
// none — even tasks older than the ones the chunks wrote (the listing is newest first), which a
// watermark derived from rows would skip.
func TestKilledBetweenChunks(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: simulator.Config{Seed: 64, Users: 1, KeysPerUser: 1, TasksPerUser: -1, HistoryDays: 2}})
	u := e.sim.Users()[0]
	// All finished outside REVISION_WINDOW, after CHARGE_FROM: nothing would re-list them.
	base := e.chargeFrom.Add(time.Hour)
	for i := range 450 {
		at := base.Add(time.Duration(i) * time.Second)
		fin := at.Add(time.Minute)
		e.sim.AddTask(u, simulator.Task{ID: taskID(i), CreatedAt: at, Emails: 2, Done: 2, Finished: true, FinishedAt: &fin,
			Results: map[string]int64{"valid": 1, "invalid": 1}})
	}
	s := e.syncer(func(o *syncer.Options) { o.RevisionWindow = time.Minute })
	s.SetChunkPages(1)
	ctx, cancel := context.WithCancel(context.Background())
	s.SetHooks(&syncer.Hooks{AfterChunk: func(hctx context.Context, _ string, chunk int) error {
		if chunk == 2 {
			cancel() // the process is told to stop between two chunks
			return errors.Join(hctx.Err(), context.Canceled)
		}
		return nil
	}})
	sum, err := s.RunCycle(ctx, syncer.CycleOptions{All: true})
	if err != nil || sum.Abandoned != 1 {
		t.Fatalf("summary %+v, %v; want the user abandoned between chunks", sum, err)
	}
	if got := e.q(`select count(*) from tasks where user_id = $1`, u); got != 200 {
		t.Fatalf("%d tasks after two chunks of 100, want 200", got)
	}
	if got := e.q(`select count(*) from sync_state where user_id = $1 and task_watermark is null and lease_owner is null`, u); got != 1 {
		t.Fatal("a chunk moved the watermark, or the lease was left behind")
	}
	e.checkInvariants(false)

	s.SetHooks(nil)
	e.cycle(s, syncer.CycleOptions{All: true})
	if got := e.q(`select count(*) from tasks where user_id = $1`, u); got != 450 {
		t.Fatalf("%d of 450 tasks mirrored after the crash", got)
	}
	if got := e.q(`select count(*) from credit_ledger where user_id = $1 and source = 'task'`, u); got != 450 {
		t.Fatalf("%d task charges, want 450 (each once)", got)
	}
	e.checkInvariants(true)
}

// A sync that lasts several SYNC_LEASE_TTLs keeps its lease, chunk after chunk: between chunks
// the test waits for renewals (a signal, not a sleep), and another worker meanwhile finds the
// user leased. Renewal never waits on the worker's own transactions.
func TestLeaseHeldAcrossChunksForManyTTLs(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: simulator.Config{Seed: 65, Users: 1, KeysPerUser: 1, TasksPerUser: -1, HistoryDays: 1}})
	u := e.sim.Users()[0]
	for i := range 350 {
		at := e.clock.Now().Add(-time.Duration(i+1) * time.Minute)
		e.sim.AddTask(u, simulator.Task{ID: taskID(i), CreatedAt: at, Emails: 1, Done: 1, Finished: true, Results: map[string]int64{"valid": 1}})
	}
	renewed := make(chan struct{}, 1000)
	a := e.syncer(func(o *syncer.Options) { o.WorkerID = "a"; o.LeaseTTL = 150 * time.Millisecond })
	a.SetChunkPages(1)
	atChunk2, checked := make(chan struct{}), make(chan struct{})
	a.SetHooks(&syncer.Hooks{
		AfterRenew: func(string) { renewed <- struct{}{} },
		AfterChunk: func(_ context.Context, _ string, chunk int) error {
			for range 3 { // three renewals: a whole TTL per chunk
				<-renewed
			}
			if chunk == 2 {
				close(atChunk2)
				<-checked
			}
			return nil
		},
	})
	done := make(chan syncer.Summary)
	go func() {
		sum, _ := a.RunCycle(context.Background(), syncer.CycleOptions{UserID: u})
		done <- sum
	}()
	// Two chunks and six renewals in (two TTLs), another worker tries the user.
	<-atChunk2
	e.checkLeaseHeld(u, func() { close(checked) }, done)
}

// hostileTasks serves the simulator, except that the task listing of one user misbehaves as
// page(offset) says; it counts the task pages served.
type hostileTasks struct {
	next  http.Handler
	user  string
	page  func(offset int) map[string]any
	pages atomic.Int32
}

func (h *hostileTasks) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/v1/tasks" || r.URL.Query().Get("user_id") != h.user {
		h.next.ServeHTTP(w, r)
		return
	}
	h.pages.Add(1)
	off, _ := strconv.Atoi(r.URL.Query().Get("offset"))
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(h.page(off))
}

// runningTasks is a page of 100 unfinished tasks numbered from first.
func runningTasks(user string, first int, created time.Time) []map[string]any {
	out := make([]map[string]any, 100)
	for i := range out {
		out[i] = map[string]any{"id": fmt.Sprintf("hostile-%07d", first+i), "user_id": user,
			"created_at": created.Format(time.RFC3339Nano), "metrics": map[string]any{"progress": 0.5}}
	}
	return out
}

// A task pass is bounded: it stops with its own error kind when pages bring nothing new, when it
// passes the page cap, or when the count claimed is absurd; the user fails visibly, nothing of
// the pass moves its watermark, and the other user is synced.
func TestTaskPagingIsBounded(t *testing.T) {
	t.Parallel()
	const maxPages = 20
	cases := []struct {
		name, kind string
		page       func(user string, created time.Time) func(int) map[string]any
		maxServed  int32
	}{
		{"same ids on every page", syncer.KindTasksNoProgress, func(user string, created time.Time) func(int) map[string]any {
			return func(int) map[string]any {
				return map[string]any{"count": 1000, "limit": 100, "tasks": runningTasks(user, 0, created)}
			}
		}, 4},
		{"new ids forever, no count", syncer.KindTasksPageCap, func(user string, created time.Time) func(int) map[string]any {
			return func(off int) map[string]any {
				return map[string]any{"limit": 100, "offset": off, "tasks": runningTasks(user, off, created)}
			}
		}, maxPages},
		{"absurd count", syncer.KindTasksCountAbsurd, func(user string, created time.Time) func(int) map[string]any {
			return func(off int) map[string]any {
				return map[string]any{"count": 1_000_000_000, "limit": 100, "offset": off, "tasks": runningTasks(user, off, created)}
			}
		}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t, envConfig{sim: simulator.Config{Seed: 66, Users: 2, KeysPerUser: 1, TasksPerUser: 2, HistoryDays: 1}})
			ids := e.sim.Users()
			bad := ids[0]
			h := &hostileTasks{next: e.sim.Handler(), user: bad, page: tc.page(bad, e.clock.Now().Add(-time.Hour))}
			srv := httptest.NewServer(h)
			t.Cleanup(srv.Close)
			o := e.opts
			o.MaxTaskPages = maxPages
			s := e.newSyncer(e.st, e.client(func(c *upstream.Config) { c.BaseURL = srv.URL + "/api/v1" }), o)
			s.SetChunkPages(1)
			sum := e.cycle(s, syncer.CycleOptions{All: true})
			if sum.Failed != 1 || sum.Synced != 1 {
				t.Fatalf("summary %+v; want the hostile user failed and the other synced", sum)
			}
			if got := h.pages.Load(); got > tc.maxServed {
				t.Fatalf("%d task pages read; the pass should stop by page %d", got, tc.maxServed)
			}
			var kind, status string
			var wm *time.Time
			if err := e.db.QueryRow(context.Background(), `select last_error_kind, status, task_watermark from sync_state where user_id = $1`, bad).
				Scan(&kind, &status, &wm); err != nil {
				t.Fatal(err)
			}
			if kind != tc.kind || status != "error" || wm != nil {
				t.Fatalf("sync_state: kind %q status %q watermark %v; want %q, error, no watermark", kind, status, wm, tc.kind)
			}
			if n := len(e.events("sync.user.failed")); n != 1 {
				t.Fatalf("%d sync.user.failed lines, want 1", n)
			}
			e.checkInvariants(false)
		})
	}
}

// Finished tasks are re-read for revisions once per REVISION_INTERVAL: a revision of an older
// finished task is not listed between sweeps, and is charged by the first sync after the interval.
func TestRevisionSweepsFollowTheInterval(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: simulator.Config{Seed: 67, Users: 1, KeysPerUser: 1, TasksPerUser: -1, HistoryDays: 1}})
	u := e.sim.Users()[0]
	now := e.clock.Now()
	for i := range 150 { // older finished tasks first, then a newer one
		at := now.Add(-5*time.Hour + time.Duration(i)*time.Minute)
		e.sim.AddTask(u, simulator.Task{ID: taskID(i), CreatedAt: at, Emails: 4, Done: 4, Finished: true, FinishedAt: &at,
			Results: map[string]int64{"valid": 2}})
	}
	rl := e.countRequests()
	s := e.syncer(func(o *syncer.Options) { o.RevisionInterval = time.Hour })
	e.cycle(s, syncer.CycleOptions{All: true})
	if got := countKind(rl.take(u), "tasks"); got != 2 {
		t.Fatalf("first pass read %d task pages, want 2 (150 tasks)", got)
	}
	e.sim.UpdateTask(u, taskID(0), func(t *simulator.Task) { t.Results = map[string]int64{"valid": 4} })
	e.clock.Add(30 * time.Minute)
	e.cycle(s, syncer.CycleOptions{All: true})
	if got := countKind(rl.take(u), "tasks"); got != 1 {
		t.Fatalf("between sweeps the pass read %d task pages, want 1", got)
	}
	if got := e.q(`select count(*) from credit_ledger where subject = $1 and source = 'task_adjust'`, taskID(0)); got != 0 {
		t.Fatal("a revision of an old finished task was read between sweeps")
	}
	e.clock.Add(31 * time.Minute)
	e.cycle(s, syncer.CycleOptions{All: true})
	if got := countKind(rl.take(u), "tasks"); got != 2 {
		t.Fatalf("the sweep read %d task pages, want 2", got)
	}
	if got := e.q(`select coalesce(sum(amount), 0) from credit_ledger where subject = $1`, taskID(0)); got != 4 {
		t.Fatalf("task %s charged %d after the sweep, want 4 (2, then the revision's 2)", taskID(0), got)
	}
	e.checkInvariants(true)
}

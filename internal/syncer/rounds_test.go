package syncer_test

import (
	"fmt"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/usage-sync/usage-sync/internal/simulator"
	"github.com/usage-sync/usage-sync/internal/syncer"
	"github.com/usage-sync/usage-sync/internal/upstream"
)

// The tests of a user's reads in rounds (docs/design.md, "What a cycle may cost": "A user's
// independent reads run at once") read the simulator's record of each request's interval, in the simulator's own sequence of
// arrivals and ends, so "went out together" and "started after that one ended" do not depend on
// the machine's speed. Where reads must be seen in flight together, a gate holds them in the
// simulator until all of them have arrived: code that sends them one after another never opens
// it, and fails on the intervals once the gate gives up.

// gateGiveUp is how long a gate holds requests that are waiting for others that never come: only
// reached when the code under test does not send them together.
const gateGiveUp = 10 * time.Second

// gate holds one user's requests that hold picks until every request kind of want has arrived.
type gate struct {
	user    string
	hold    func(simulator.Request) bool
	mu      sync.Mutex
	want    map[string]int // kind → how many must arrive
	open    chan struct{}
	timeout <-chan time.Time
}

func kind(r simulator.Request) string {
	switch {
	case r.Lifetime():
		return "lifetime"
	case r.Window():
		return "window"
	case r.TaskPage():
		return "tasks"
	}
	return "other"
}

func newGate(user string, want map[string]int, hold func(simulator.Request) bool) *gate {
	return &gate{user: user, want: want, hold: hold, open: make(chan struct{}), timeout: time.After(gateGiveUp)}
}

func (g *gate) hook(user, path string, q url.Values) {
	if user != g.user {
		return
	}
	r := simulator.Request{Path: path, Query: q}
	g.mu.Lock()
	k := kind(r)
	if n, ok := g.want[k]; ok {
		g.want[k] = n - 1
		done := true
		for _, left := range g.want {
			done = done && left <= 0
		}
		if done {
			select {
			case <-g.open:
			default:
				close(g.open)
			}
		}
	}
	g.mu.Unlock()
	if g.hold(r) {
		select {
		case <-g.open:
		case <-g.timeout:
		}
	}
}

// lifetimes splits a user's requests into its lifetime listings, windows and task pages.
func byKind(reqs []simulator.Request) (lifetimes, windows, tasks []simulator.Request) {
	for _, r := range reqs {
		switch kind(r) {
		case "lifetime":
			lifetimes = append(lifetimes, r)
		case "window":
			windows = append(windows, r)
		case "tasks":
			tasks = append(tasks, r)
		}
	}
	return lifetimes, windows, tasks
}

func describe(reqs []simulator.Request) string {
	s := ""
	for _, r := range reqs {
		s += fmt.Sprintf("\n  %-8s %s?%s [%d, %d]", kind(r), r.Path, r.Query.Encode(), r.Start, r.End)
	}
	return s
}

// A quiet user's two requests, its lifetime listing and its first task page, are one round
// trip: the task page is sent while the listing is in flight.
func TestQuietUserReadsInOneRound(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: simulator.Config{Seed: 71, Users: 2, KeysPerUser: 2, TasksPerUser: 3, HistoryDays: 2, RecordRequests: true}})
	e.quietClock()
	u := e.sim.Users()[0]
	s := e.syncer(func(o *syncer.Options) { o.RevisionInterval = time.Hour })
	e.cycle(s, syncer.CycleOptions{All: true})
	e.clock.Add(time.Minute)
	e.cycle(s, syncer.CycleOptions{All: true}) // the listings now agree with the previous sync's
	e.clock.Add(time.Minute)

	e.sim.ResetRequests()
	// Each of the two is held until the other has arrived.
	g := newGate(u, map[string]int{"lifetime": 1, "tasks": 1}, func(r simulator.Request) bool { return r.Lifetime() || r.TaskPage() })
	e.sim.OnRequest(g.hook)
	if sum := e.cycle(s, syncer.CycleOptions{All: true}); !sum.OK() {
		t.Fatalf("cycle: %+v", sum)
	}
	reqs := e.sim.Requests(u)
	lifetimes, windows, tasks := byKind(reqs)
	if len(reqs) != 2 || len(lifetimes) != 1 || len(tasks) != 1 || len(windows) != 0 {
		t.Fatalf("a quiet user made %d requests, want its lifetime listing and one task page:%s", len(reqs), describe(reqs))
	}
	if !lifetimes[0].Overlaps(tasks[0]) || simulator.Rounds(reqs) != 1 {
		t.Fatalf("the quiet user's two requests went one after the other:%s", describe(reqs))
	}
	e.checkInvariants(true)
}

// A cold user's reads come in three rounds: the lifetime listing; every day window (key listing
// and per-purpose totals) together, with the task page out by then; and, once every window has
// ended, the lifetime listing the guard compares them with. A window read after the guard's
// listing started, or a task pass waiting for the windows, fails here.
func TestColdUserReadsInThreeRounds(t *testing.T) {
	t.Parallel()
	// Latency keeps each request in flight a while after the gate opens: a guard listing sent
	// alongside the windows would be seen starting before they end.
	e := setup(t, envConfig{sim: simulator.Config{Seed: 72, Users: 2, KeysPerUser: 2, TasksPerUser: 3, HistoryDays: 3,
		RecordRequests: true, Latency: 20 * time.Millisecond}})
	u := e.sim.Users()[0]
	// CHARGE_FROM is two days ago at midnight: three days, each a key listing and the per-purpose
	// totals. The windows are held until all six and the task page have arrived.
	const windowReads = 3 * 2
	g := newGate(u, map[string]int{"window": windowReads, "tasks": 1}, func(r simulator.Request) bool { return r.Window() })
	e.sim.OnRequest(g.hook)
	s := e.syncer()
	if sum := e.cycle(s, syncer.CycleOptions{All: true}); !sum.OK() {
		t.Fatalf("cycle: %+v", sum)
	}
	reqs := e.sim.Requests(u)
	lifetimes, windows, tasks := byKind(reqs)
	if len(lifetimes) != 2 || len(windows) != windowReads || len(tasks) != 1 || len(reqs) != 2+windowReads+1 {
		t.Fatalf("a cold user made %d requests, want 2 lifetime listings, %d window reads and a task page:%s", len(reqs), windowReads, describe(reqs))
	}
	first, guard := lifetimes[0], lifetimes[1]
	if first.Start > guard.Start {
		first, guard = guard, first
	}
	for _, w := range windows {
		if !first.Before(w) {
			t.Errorf("a window started before the first lifetime listing ended, which decides whether it is read:%s", describe(reqs))
		}
		// The guard: no window is read after the listing that checks it has started.
		if !w.Before(guard) {
			t.Fatalf("the guard's lifetime listing started before a window it checks ended:%s", describe(reqs))
		}
		for _, o := range windows {
			if !w.Overlaps(o) {
				t.Fatalf("two windows were read one after the other:%s", describe(reqs))
			}
		}
		if !tasks[0].Overlaps(w) && !tasks[0].Before(w) {
			t.Fatalf("the task page waited for the windows:%s", describe(reqs))
		}
	}
	if n := simulator.Rounds(reqs); n != 3 {
		t.Fatalf("a cold user's reads took %d rounds, want 3:%s", n, describe(reqs))
	}
	e.checkInvariants(true)
	e.assertMirrors(u)
}

// 64 users at once, through 429s and 500s and their retries, never have more requests in flight
// than UPSTREAM_MAX_INFLIGHT, as the simulator counts them; every user syncs and is charged once.
func TestInFlightCapHoldsUnderRetries(t *testing.T) {
	t.Parallel()
	const users, limit = 64, 8
	e := setup(t, envConfig{sim: simulator.Config{Seed: 73, Users: users, KeysPerUser: 2, TasksPerUser: 3, HistoryDays: 2,
		Latency: 5 * time.Millisecond, RateLimitEvery: 7, ErrorRate: 0.1}, opts: syncer.Options{Concurrency: 16}})
	up := e.client(func(c *upstream.Config) {
		c.MaxInFlight, c.MaxRetryAfter, c.MaxElapsed = limit, 10*time.Millisecond, 20*time.Second
	})
	s := syncer.New(e.st, up, e.log, e.opts)
	for range 2 {
		if sum := e.cycle(s, syncer.CycleOptions{All: true}); !sum.OK() || sum.Synced != users {
			t.Fatalf("cycle: %+v", sum)
		}
		e.clock.Add(time.Minute)
	}
	now, peak := e.sim.InFlight()
	if peak > limit || now != 0 {
		t.Fatalf("the simulator saw %d requests in flight at once (%d left), above UPSTREAM_MAX_INFLIGHT %d", peak, now, limit)
	}
	if len(e.events("upstream.retry")) == 0 {
		t.Fatal("no request was retried: the test does not exercise 429s and 500s")
	}
	t.Logf("peak in flight %d of %d; %d retries", peak, limit, len(e.events("upstream.retry")))
	e.checkInvariants(true)
}

// One reader claims its next user while it still reads the one before: the claim's database
// round trip then overlaps the reads instead of adding to every user's slot. Each user's
// requests are held in the simulator until another user has been claimed; a reader that claims
// only after its reads never releases the first user's, and the gate gives up.
func TestAReaderClaimsItsNextUserWhileReading(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: simulator.Config{Seed: 72, Users: 2, KeysPerUser: 1, TasksPerUser: 1, HistoryDays: 1}})
	users := e.sim.Users()
	otherClaimed := map[string]chan struct{}{users[0]: make(chan struct{}), users[1]: make(chan struct{})}
	var once [2]sync.Once
	s := e.syncer(func(o *syncer.Options) { o.Concurrency = 1 })
	s.SetHooks(&syncer.Hooks{AfterClaim: func(claimed string) {
		for i, u := range users {
			if u != claimed {
				once[i].Do(func() { close(otherClaimed[u]) })
			}
		}
	}})
	var mu sync.Mutex
	gaveUp := map[string]int{}
	giveUp := time.After(gateGiveUp)
	e.sim.OnRequest(func(user, _ string, _ url.Values) {
		select {
		case <-otherClaimed[user]:
		case <-giveUp:
			mu.Lock()
			gaveUp[user]++
			mu.Unlock()
		}
	})
	sum := e.cycle(s, syncer.CycleOptions{All: true})
	mu.Lock()
	defer mu.Unlock()
	if len(gaveUp) > 0 {
		t.Fatalf("requests of %v were sent before the reader claimed another user: the next claim waited for the reads", gaveUp)
	}
	if sum.Synced != 2 || !sum.OK() {
		t.Fatalf("summary %+v; want both users synced", sum)
	}
}

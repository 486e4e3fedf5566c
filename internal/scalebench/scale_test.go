package scalebench

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usage-sync/usage-sync/internal/simulator"
)

// The scenarios of the scale contract, each a benchmark that runs `usage-sync --once` as child
// processes and prints one table row per run (the Makefile's bench-scale collects them). They
// run once per iteration on a fresh database: use -benchtime 1x. SCALE (default 1, or 0.05
// under -short) multiplies every user and task count, for a quick pass.

// scenarioLatencyDefault is the upstream's latency in the scenarios that have one.
const scenarioLatencyDefault = 20 * time.Millisecond

func scale(tb testing.TB) float64 {
	if v := os.Getenv("SCALE"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			tb.Fatalf("SCALE=%q: want a positive number such as 0.1", v)
		}
		return f
	}
	if testing.Short() {
		return 0.05
	}
	return 1
}

func scaled(n int, f float64) int { return max(1, int(math.Round(float64(n)*f))) }

// count prints 100000 as 100k.
func count(n int) string {
	if n >= 1000 && n%1000 == 0 {
		return strconv.Itoa(n/1000) + "k"
	}
	return strconv.Itoa(n)
}

var header sync.Once

// report prints the runs' table rows and their per-table detail, and reports each run's figures
// as metrics named after its phase, for benchstat.
// coldThenSteady runs one --once on a fresh database (cold), then another with nothing new
// (steady), and reports both.
func coldThenSteady(b *testing.B, w *world, name string, env map[string]string) {
	cold := w.once(name+": cold", 1, env)
	steady := w.once(name+": steady", 1, env)
	report(b, map[string]run{"cold": cold, "steady": steady}, "cold", "steady")
}

func report(b *testing.B, runs map[string]run, order ...string) {
	b.Helper()
	header.Do(func() { fmt.Println(tableHeader) })
	for _, phase := range order {
		r := runs[phase]
		fmt.Println(r.row())
		b.Log(r.detail())
		b.ReportMetric(r.wall.Seconds(), phase+"-wall-s")
		if r.bound() > 0 {
			b.ReportMetric(r.ratio(), phase+"-x-bound")
			b.ReportMetric(r.criticalRatio(), phase+"-x-critical")
		}
		b.ReportMetric(float64(r.peak), phase+"-peak-inflight")
		b.ReportMetric(r.perUser(float64(r.rounds)), phase+"-rounds/user")
		b.ReportMetric(r.perUser(float64(r.requests)), phase+"-req/user")
		b.ReportMetric(r.perUser(float64(r.totalWrites())), phase+"-writes/user")
		b.ReportMetric(r.perUser(float64(r.wal)), phase+"-WAL-B/user")
		b.ReportMetric(float64(r.rss)/(1<<20), phase+"-RSS-MiB")
		b.ReportMetric(float64(r.exitCode()), phase+"-exit")
		b.ReportMetric(r.perUser(float64(r.cpu.Microseconds()))/1000, phase+"-cpu-ms/user")
	}
}

// usersWithKeysAndTasks is the population of scenarios b, c and d: generated users with three
// keys used over the last three days and tasks spread over them (two still running).
func usersWithKeysAndTasks(seed int64, users, tasks int, latency time.Duration) *simulator.Sim {
	return simulator.New(simulator.Config{Seed: seed, Users: users, KeysPerUser: 3, TasksPerUser: tasks,
		HistoryDays: 3, AdminToken: adminToken, Latency: latency, RecordRequests: true})
}

// a. Two users with 100,000 tasks each, all finished within REVISION_WINDOW, instant upstream,
// SYNC_LEASE_TTL=10s: a cold run, then a steady one with nothing changed.
func BenchmarkScaleHeavyTasks(b *testing.B) {
	n := scaled(100_000, scale(b))
	for range b.N {
		b.StopTimer()
		sim := simulator.New(simulator.Config{Seed: 61, Users: 2, KeysPerUser: 3, TasksPerUser: -1, HistoryDays: 3, AdminToken: adminToken,
			RecordRequests: true})
		series := simulator.NewSeries(sim)
		newest := time.Now().UTC().Add(-2 * time.Minute)
		for _, u := range sim.Users() {
			series.Add(u, simulator.TaskSeries{N: n, Newest: newest, Step: 20 * time.Hour / time.Duration(n)})
		}
		w := newWorld(b, sim, series.Handler(), 0)
		env := map[string]string{"SYNC_LEASE_TTL": "10s"}
		b.StartTimer()
		name := fmt.Sprintf("a. 2 users × %s tasks, instant, lease 10s", count(n))
		coldThenSteady(b, w, name, env)
	}
}

// b. 2,000 users × 3 keys × 20 tasks at 20 ms a request, SYNC_CONCURRENCY=8: cold, then steady.
func BenchmarkScaleManyUsers(b *testing.B) {
	users := scaled(2000, scale(b))
	for range b.N {
		b.StopTimer()
		sim := usersWithKeysAndTasks(62, users, 20, scenarioLatencyDefault)
		w := newWorld(b, sim, nil, scenarioLatencyDefault)
		env := map[string]string{"SYNC_CONCURRENCY": "8"}
		b.StartTimer()
		name := fmt.Sprintf("b. %s users × 3 keys × 20 tasks, 20 ms, concurrency 8", count(users))
		coldThenSteady(b, w, name, env)
	}
}

// c. Replicas: b's population, cold, one --once process against three at once on another fresh
// database. The three's row notes users whose tasks were listed twice (synced twice).
func BenchmarkScaleReplicas(b *testing.B) {
	users := scaled(2000, scale(b))
	for range b.N {
		b.StopTimer()
		sim := usersWithKeysAndTasks(63, users, 20, scenarioLatencyDefault)
		w1 := newWorld(b, sim, nil, scenarioLatencyDefault)
		w3 := w1.fresh()
		env := map[string]string{"SYNC_CONCURRENCY": "8"}
		b.StartTimer()
		name := fmt.Sprintf("c. %s users, 20 ms, concurrency 8", count(users))
		one := w1.once(name+": one process", 1, env)
		three := w3.once(name+": three processes", 3, env)
		ratio := three.wall.Seconds() / one.wall.Seconds()
		three.note = strings.TrimPrefix(three.note+fmt.Sprintf("; %.2f× one", ratio), "; ")
		report(b, map[string]run{"one": one, "three": three}, "one", "three")
		b.ReportMetric(ratio, "three/one")
	}
}

// d. 10,000 users × 3 keys × 50 tasks, instant upstream, the defaults: memory and database work
// per user at a population's scale; cold, then steady.
func BenchmarkScaleTenThousand(b *testing.B) {
	users := scaled(10_000, scale(b))
	for range b.N {
		b.StopTimer()
		sim := usersWithKeysAndTasks(64, users, 50, 0)
		w := newWorld(b, sim, nil, 0)
		env := map[string]string{}
		b.StartTimer()
		name := fmt.Sprintf("d. %s users × 3 keys × 50 tasks, instant", count(users))
		coldThenSteady(b, w, name, env)
	}
}

// e. Paced: b's population at 300 users, cold, with UPSTREAM_RATE_LIMIT=100: the request rate
// the upstream sees, from the first request to the last, stays at the limit.
func BenchmarkScaleRateLimited(b *testing.B) {
	users := scaled(300, scale(b))
	const limit = 100
	for range b.N {
		b.StopTimer()
		sim := usersWithKeysAndTasks(66, users, 20, scenarioLatencyDefault)
		w := newWorld(b, sim, nil, scenarioLatencyDefault)
		env := map[string]string{"SYNC_CONCURRENCY": "8", "UPSTREAM_RATE_LIMIT": strconv.Itoa(limit)}
		b.StartTimer()
		name := fmt.Sprintf("e. %s users, 20 ms, concurrency 8, UPSTREAM_RATE_LIMIT=%d", count(users), limit)
		cold := w.once(name+": cold", 1, env)
		cold.note = strings.TrimPrefix(cold.note+fmt.Sprintf("; %.1f req/s measured", cold.rate), "; ")
		report(b, map[string]run{"cold": cold}, "cold")
		b.ReportMetric(cold.rate, "cold-req/s")
	}
}

// The harness measures what it says, at a tiny size: requests are counted, rows written are
// seen in pg_stat_user_tables after the child's sessions end, the child's RSS and exit code are
// captured, and the configuration error of a bad environment shows as exit 2.
func TestHarnessSmoke(t *testing.T) {
	t.Parallel()
	sim := usersWithKeysAndTasks(65, 3, 3, time.Millisecond)
	w := newWorld(t, sim, nil, time.Millisecond)
	r := w.once("smoke", 1, map[string]string{})
	t.Log(r.row())
	t.Log(r.detail())
	if r.exitCode() != 0 || r.synced != 3 {
		t.Fatalf("exit %v, synced %d; want 0 and 3\n%s", r.exits, r.synced, r.detail())
	}
	// Every user's sync reads at least its lifetime key listing and one task page.
	if r.requests < 2*len(w.users) || r.maxPerUser < 2 {
		t.Fatalf("counted %d requests (max %d per user) for %d users", r.requests, r.maxPerUser, len(w.users))
	}
	if r.writes["public.tasks"] < 9 || r.writes["public.api_keys"] < 6 || r.writes["public.sync_state"] < 3 {
		t.Fatalf("row writes %v; want at least the 9 tasks, 6 keys and 3 users' sync_state", r.writes)
	}
	if r.wal <= 0 || r.rss < 1<<20 || r.wall <= 0 || r.bound() <= 0 || r.cpu <= 0 {
		t.Fatalf("WAL %d B, RSS %d B, wall %v, bound %v, CPU %v: not measured", r.wal, r.rss, r.wall, r.bound(), r.cpu)
	}
	// A cold user takes at least three rounds (the guard's order: listing, windows, listing) and
	// at most its requests (more than three when, at 1 ms, one window ends before another starts);
	// the simulator saw requests in flight, never more than the child's bound.
	if r.rounds < 3*len(w.users) || r.rounds > r.requests || r.criticalBound() <= 0 || r.criticalBound() > r.bound() {
		t.Fatalf("%d rounds for %d cold users and %d requests (critical-path bound %v, serial %v)", r.rounds, len(w.users), r.requests, r.criticalBound(), r.bound())
	}
	if r.peak < 1 || r.peak > r.inFlightCap || r.rate <= 0 {
		t.Fatalf("peak in flight %d (cap %d), rate %.1f/s: not measured", r.peak, r.inFlightCap, r.rate)
	}
	if !strings.HasPrefix(r.row(), "| smoke | 3 | 1 |") {
		t.Fatalf("row %q", r.row())
	}

	bad := w.onceRaw("bad", 1, map[string]string{"SYNC_CONCURRENCY": "0"})
	if bad.exitCode() != 2 || bad.requests != 0 {
		t.Fatalf("SYNC_CONCURRENCY=0: exit %v, %d requests; want exit 2 before any request", bad.exits, bad.requests)
	}
}

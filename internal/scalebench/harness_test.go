package scalebench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/usage-sync/usage-sync/internal/config"
	"github.com/usage-sync/usage-sync/internal/pgtest"
	"github.com/usage-sync/usage-sync/internal/simulator"
	"github.com/usage-sync/usage-sync/internal/syncer"
)

// adminToken is the simulator's admin token, passed to the child as UPSTREAM_ADMIN_TOKEN.
const adminToken = "scalebench-admin"

// creditsDefault is every simulated user's starting balance.
const creditsDefault = 1_000_000

// binDir holds the binary built for this test process; TestMain removes it.
var binDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var build struct {
	once sync.Once
	path string
	err  error
}

// binary returns the usage-sync binary to run: SCALE_BIN when set (make bench-scale passes
// bin/usage-sync), else one built once per test process with `go build` into a temp dir.
func binary(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("SCALE_BIN"); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			tb.Fatalf("SCALE_BIN: %v", err)
		}
		return abs
	}
	build.once.Do(func() {
		dir, err := os.MkdirTemp("", "scalebench-")
		if err != nil {
			build.err = err
			return
		}
		binDir = dir
		build.path = filepath.Join(dir, "usage-sync")
		out, err := exec.Command("go", "build", "-o", build.path, "github.com/usage-sync/usage-sync/cmd/usage-sync").CombinedOutput()
		if err != nil {
			build.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if build.err != nil {
		tb.Fatalf("build usage-sync: %v", build.err)
	}
	return build.path
}

// world is one scenario's setting: a fresh migrated database whose profiles are the
// simulator's users, and the simulator behind real loopback HTTP, counting requests.
type world struct {
	tb      testing.TB
	dsn     string
	base    string
	users   []string
	latency time.Duration
	count   *counter
	sim     *simulator.Sim // records each request's interval and the peak in flight
}

// counter counts the simulator's authenticated requests, per user, and the listings of a
// user's tasks from their first page, which a sync makes once: more means synced twice.
type counter struct {
	mu          sync.Mutex
	total       int
	perUser     map[string]int
	firstPages  map[string]int
	first, last time.Time // the first and the last request's arrival
}

func (c *counter) hook(userID, path string, q url.Values) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.total == 0 {
		c.first = now
	}
	c.last = now
	c.total++
	c.perUser[userID]++
	if strings.HasSuffix(path, "/tasks") && (q.Get("offset") == "" || q.Get("offset") == "0") {
		c.firstPages[userID]++
	}
}

func (c *counter) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total = 0
	c.first, c.last = time.Time{}, time.Time{}
	c.perUser = make(map[string]int)
	c.firstPages = make(map[string]int)
}

// snapshot returns the requests so far, the largest count of one user, and the users whose
// tasks were listed from the start more than once.
func (c *counter) snapshot() (total, maxPerUser, twice int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.perUser {
		maxPerUser = max(maxPerUser, n)
	}
	for _, n := range c.firstPages {
		if n > 1 {
			twice++
		}
	}
	return c.total, maxPerUser, twice
}

// newWorld serves sim (through handler, nil meaning sim.Handler()) and seeds a fresh database
// with its users.
func newWorld(tb testing.TB, sim *simulator.Sim, handler http.Handler, latency time.Duration) *world {
	tb.Helper()
	if handler == nil {
		handler = sim.Handler()
	}
	w := &world{tb: tb, users: sim.Users(), latency: latency, count: &counter{}, sim: sim}
	w.count.reset()
	sim.OnRequest(w.count.hook)
	srv := httptest.NewServer(handler)
	tb.Cleanup(srv.Close)
	w.base = srv.URL + "/api/v1"
	w.dsn = pgtest.MigratedDB(tb, pgtest.Plain)
	w.seed()
	return w
}

// seed inserts every user into profiles and user_credits, set-based.
func (w *world) seed() {
	ctx := context.Background()
	c, err := pgx.Connect(ctx, w.dsn)
	if err != nil {
		w.tb.Fatalf("connect: %v", err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, `
		with u as (insert into profiles (user_id) select unnest($1::text[])::uuid returning user_id)
		insert into user_credits (user_id, credits_remaining) select user_id, $2 from u`, w.users, creditsDefault); err != nil {
		w.tb.Fatalf("seed profiles: %v", err)
	}
}

// fresh is a second, empty database with the same users, for a run that must start cold.
func (w *world) fresh() *world {
	w2 := *w
	w2.dsn = pgtest.MigratedDB(w.tb, pgtest.Plain)
	w2.seed()
	return &w2
}

// dbStats is what the database had seen at one moment.
type dbStats struct {
	writes  map[string]int64 // per table: n_tup_ins + n_tup_upd + n_tup_del
	walByte int64            // pg_current_wal_lsn, cluster-wide
}

// stats reads the table counters once the other sessions have ended (pgtest.TableWrites).
func (w *world) stats(exclude ...uint32) dbStats {
	w.tb.Helper()
	writes, wal := pgtest.TableWrites(w.tb, w.dsn, exclude...)
	return dbStats{writes: writes, walByte: wal}
}

// run is one measured `usage-sync --once` run, of one or several processes at once.
type run struct {
	name        string
	users       int
	procs       int
	concurrency int // SYNC_CONCURRENCY of each process
	inFlightCap int // UPSTREAM_MAX_INFLIGHT of each process, as the child resolves it
	latency     time.Duration
	peak        int     // the most requests in flight at once, as the simulator counted them
	rounds      int     // Σ over users of the rounds their requests took (simulator.Rounds)
	rate        float64 // requests per second from the first request's arrival to the last's
	wall        time.Duration
	requests    int
	maxPerUser  int
	twice       int              // users whose tasks were listed from the start more than once
	writes      map[string]int64 // row writes per table
	wal         int64            // bytes of WAL records of this database's blocks and transactions
	walCluster  int64            // bytes of WAL the whole cluster wrote meanwhile (others' included)
	walNote     string           // why wal could not be measured; then wal is walCluster
	walFPI      int64            // full-page images in wal
	walTop      []string         // its largest kinds of record
	rss         int64            // peak RSS of the largest child, bytes
	cpu         time.Duration    // user + system CPU of the children
	// harnessCPU is this process's CPU over the run: the simulator serving the child, mostly.
	harnessCPU time.Duration
	// machineBusy and machineTotal are the machine's CPU time busy and in all over the run, every
	// core and every process (PostgreSQL's and anyone else's included), from /proc/stat.
	machineBusy, machineTotal time.Duration
	exits                     []int
	synced                    int // Σ "N synced" of the children's summary lines; -1 when none parsed
	skipped                   int
	summaries                 []string
	note                      string
}

func (r run) totalWrites() int64 {
	var n int64
	for _, v := range r.writes {
		n += v
	}
	return n
}

// bound is the serial latency bound, the time of a run whose every request waits for the one
// before it: requests × latency ÷ (concurrency × processes).
func (r run) bound() time.Duration {
	if r.latency == 0 || r.concurrency == 0 {
		return 0
	}
	return time.Duration(float64(r.requests) * float64(r.latency) / float64(r.concurrency*r.procs))
}

// criticalBound is the critical-path bound, the time of a run whose users each take only their
// rounds of requests (those that wait for an earlier answer): rounds × latency ÷ (concurrency ×
// processes), Σ rounds over users.
func (r run) criticalBound() time.Duration {
	if r.latency == 0 || r.concurrency == 0 {
		return 0
	}
	return time.Duration(float64(r.rounds) * float64(r.latency) / float64(r.concurrency*r.procs))
}

func (r run) ratio() float64 { return ratioTo(r.wall, r.bound()) }

func (r run) criticalRatio() float64 { return ratioTo(r.wall, r.criticalBound()) }

func ratioTo(wall, b time.Duration) float64 {
	if b == 0 {
		return math.NaN()
	}
	return float64(wall) / float64(b)
}

// rounds adds up, user by user, the rounds the user's requests took.
func rounds(log []simulator.Request) int {
	byUser := map[string][]simulator.Request{}
	for _, r := range log {
		byUser[r.UserID] = append(byUser[r.UserID], r)
	}
	n := 0
	for _, reqs := range byUser {
		n += simulator.Rounds(reqs)
	}
	return n
}

func (r run) perUser(n float64) float64 {
	if r.users == 0 {
		return 0
	}
	return n / float64(r.users)
}

// exitCode is the worst exit code of the children (the largest; 0 when all succeeded).
func (r run) exitCode() int {
	worst := 0
	for _, c := range r.exits {
		worst = max(worst, c)
	}
	return worst
}

// childEnv is the child's whole environment: the variables given and nothing inherited, so
// the caller's shell cannot change what is measured.
func (w *world) childEnv(extra map[string]string) []string {
	env := map[string]string{
		"DATABASE_URL":         w.dsn,
		"UPSTREAM_BASE_URL":    w.base,
		"UPSTREAM_ADMIN_TOKEN": adminToken,
	}
	for k, v := range extra {
		env[k] = v
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

var summaryRE = regexp.MustCompile(`(\d+) users: (\d+) synced.*?(\d+) failed, (\d+) skipped`)

// once runs procs `usage-sync --once` processes at once with env, and measures them.
// Today's worker refuses SYNC_CONCURRENCY above DB_MAX_CONNS − 1 as a configuration error
// (exit 2, before touching the database); then the run is repeated with DB_MAX_CONNS =
// SYNC_CONCURRENCY + 1, env keeps it for later runs, and the run's note says so.
func (w *world) once(name string, procs int, env map[string]string) run {
	w.tb.Helper()
	r := w.onceRaw(name, procs, env)
	if r.exitCode() == 2 && env["DB_MAX_CONNS"] == "" && strings.Contains(strings.Join(r.summaries, "\n"), "DB_MAX_CONNS") {
		env["DB_MAX_CONNS"] = strconv.Itoa(r.concurrency + 1)
		r = w.onceRaw(name, procs, env)
		r.note = "DB_MAX_CONNS=" + env["DB_MAX_CONNS"] + " needed"
	} else if env["DB_MAX_CONNS"] != "" {
		r.note = "DB_MAX_CONNS=" + env["DB_MAX_CONNS"]
	}
	return r
}

func (w *world) onceRaw(name string, procs int, env map[string]string) run {
	w.tb.Helper()
	childEnv := w.childEnv(env)
	// The children decode their environment themselves (config.Load); the report only needs
	// their concurrency and their bound on requests in flight.
	concurrency := syncer.ConcurrencyDefault
	if v := w.lookup(childEnv, "SYNC_CONCURRENCY"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			w.tb.Fatalf("%s: SYNC_CONCURRENCY %q is not a number: %v", name, v, err)
		}
		concurrency = n
	}
	inFlightCap := config.UpstreamMaxInFlightDefault(concurrency)
	if v := w.lookup(childEnv, "UPSTREAM_MAX_INFLIGHT"); v != "" && v != "0" {
		n, err := strconv.Atoi(v)
		if err != nil {
			w.tb.Fatalf("%s: UPSTREAM_MAX_INFLIGHT %q is not a number: %v", name, v, err)
		}
		inFlightCap = n
	}
	r := run{name: name, users: len(w.users), procs: procs, concurrency: concurrency, inFlightCap: inFlightCap,
		latency: w.latency, synced: -1}
	bin := binary(w.tb)
	before := w.stats()
	probe := w.startWAL()
	defer probe.close()
	w.count.reset()
	w.sim.ResetRequests()

	dir := w.tb.TempDir()
	cmds := make([]*exec.Cmd, procs)
	logs := make([]string, procs)
	for i := range cmds {
		logs[i] = filepath.Join(dir, fmt.Sprintf("child-%d.log", i))
		f, err := os.Create(logs[i])
		if err != nil {
			w.tb.Fatal(err)
		}
		defer f.Close()
		cmd := exec.Command(bin, "--once")
		cmd.Env = childEnv
		cmd.Stdout, cmd.Stderr = io.Discard, f
		cmds[i] = cmd
	}
	harnessBefore, machineBefore := selfCPU(), machineCPU()
	start := time.Now()
	peaks := make([]*peakRSS, len(cmds))
	for i, cmd := range cmds {
		if err := cmd.Start(); err != nil {
			w.tb.Fatalf("%s: start %s: %v", name, bin, err)
		}
		peaks[i] = watchRSS(cmd.Process.Pid)
	}
	for i, cmd := range cmds {
		err := cmd.Wait()
		r.rss = max(r.rss, peaks[i].stop())
		var exitErr *exec.ExitError
		if err != nil && !errors.As(err, &exitErr) {
			w.tb.Fatalf("%s: wait for the child: %v", name, err)
		}
	}
	r.wall = time.Since(start)
	r.harnessCPU = selfCPU() - harnessBefore
	mb := machineCPU()
	r.machineBusy, r.machineTotal = mb.busy-machineBefore.busy, mb.total-machineBefore.total

	for i, cmd := range cmds {
		st := cmd.ProcessState
		r.exits = append(r.exits, st.ExitCode())
		r.cpu += st.UserTime() + st.SystemTime()
		last := lastLines(w.tb, logs[i], 3)
		r.summaries = append(r.summaries, last)
		if m := summaryRE.FindStringSubmatch(last); m != nil {
			synced, _ := strconv.Atoi(m[2])
			skipped, _ := strconv.Atoi(m[4])
			r.synced = max(r.synced, 0) + synced
			r.skipped += skipped
		}
	}
	r.requests, r.maxPerUser, r.twice = w.count.snapshot()
	_, r.peak = w.sim.InFlight()
	r.rounds = rounds(w.sim.RequestLog())
	w.count.mu.Lock()
	if span := w.count.last.Sub(w.count.first); r.requests > 1 && span > 0 {
		r.rate = float64(r.requests-1) / span.Seconds()
	}
	w.count.mu.Unlock()
	after := w.stats(probe.pid)
	var use walUse
	use, r.walNote = probe.finish()
	r.wal, r.walFPI, r.walTop = use.bytes, use.fpi, use.top
	r.writes = make(map[string]int64)
	for t, n := range after.writes {
		if d := n - before.writes[t]; d != 0 {
			r.writes[t] = d
		}
	}
	r.walCluster = after.walByte - before.walByte
	if r.walNote != "" {
		r.wal = r.walCluster
	}
	return r
}

func (w *world) lookup(env []string, key string) string {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// lastLines returns the last n lines of the file at path.
func lastLines(tb testing.TB, path string, n int) string {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var ring []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		ring = append(ring, sc.Text())
		if len(ring) > n {
			ring = ring[1:]
		}
	}
	if err := sc.Err(); err != nil {
		tb.Fatalf("read %s: %v", path, err)
	}
	return strings.Join(ring, "\n")
}

// tableHeader is the table every scenario prints a row of; make bench-scale collects the rows.
// The serial bound is requests × latency ÷ concurrency (every request waiting for the one before
// it), the critical-path bound rounds × latency ÷ concurrency (only the requests that need an
// earlier answer waiting for it); the ratios are the wall time to each.
const tableHeader = `| scenario | users | procs | wall | serial bound | ratio | critical-path bound | ratio | requests/user | rounds/user | max/user | peak in flight (cap) | row writes/user | WAL/user | worker CPU/user | peak RSS | exit | synced | note |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|`

func (r run) row() string {
	bound, ratio, crit, critRatio := "—", "—", "—", "—"
	if b := r.bound(); b > 0 {
		bound = short(b)
		ratio = fmt.Sprintf("%.2f", r.ratio())
	}
	if b := r.criticalBound(); b > 0 {
		crit = short(b)
		critRatio = fmt.Sprintf("%.2f", r.criticalRatio())
	}
	note := r.note
	if r.twice > 0 {
		note = strings.TrimPrefix(note+fmt.Sprintf("; %d users' tasks listed twice", r.twice), "; ")
	}
	exits := make([]string, len(r.exits))
	for i, c := range r.exits {
		exits[i] = strconv.Itoa(c)
	}
	return fmt.Sprintf("| %s | %d | %d | %s | %s | %s | %s | %s | %.1f | %.1f | %d | %d (%d) | %.1f | %s | %s | %d MiB | %s | %d | %s |",
		r.name, r.users, r.procs, short(r.wall), bound, ratio, crit, critRatio,
		r.perUser(float64(r.requests)), r.perUser(float64(r.rounds)), r.maxPerUser, r.peak, r.inFlightCap*r.procs,
		r.perUser(float64(r.totalWrites())),
		kib(r.perUser(float64(r.wal))), short(time.Duration(r.perUser(float64(r.cpu)))), r.rss>>20, strings.Join(exits, ","), r.synced, note)
}

// detail is the per-table breakdown of a run's row writes and the children's last log lines.
func (r run) detail() string {
	tables := make([]string, 0, len(r.writes))
	for t := range r.writes {
		tables = append(tables, t)
	}
	sort.Strings(tables)
	var b strings.Builder
	fmt.Fprintf(&b, "%s: row writes", r.name)
	for _, t := range tables {
		fmt.Fprintf(&b, " %s=%d", strings.TrimPrefix(t, "public."), r.writes[t])
	}
	fmt.Fprintf(&b, "; WAL %s of this database (%s full-page images; cluster-wide meanwhile: %s)",
		kib(float64(r.wal)), kib(float64(r.walFPI)), kib(float64(r.walCluster)))
	if len(r.walTop) > 0 {
		fmt.Fprintf(&b, ", largest: %s", strings.Join(r.walTop, ", "))
	}
	if r.walNote != "" {
		fmt.Fprintf(&b, " [%s]", r.walNote)
	}
	if r.skipped > 0 {
		fmt.Fprintf(&b, "; %d skipped as leased by another worker", r.skipped)
	}
	fmt.Fprintf(&b, "; %d requests (%.1f/s from the first to the last), %d at most in flight; worker CPU %s (%s per user)",
		r.requests, r.rate, r.peak, short(r.cpu), short(time.Duration(r.perUser(float64(r.cpu)))))
	if r.machineTotal > 0 {
		rest := r.machineBusy - r.cpu - r.harnessCPU
		fmt.Fprintf(&b, "; simulator and harness CPU %s (%s per user); the machine %.0f%% busy, the rest (PostgreSQL, everyone else) %s (%s per user)",
			short(r.harnessCPU), short(time.Duration(r.perUser(float64(r.harnessCPU)))), 100*float64(r.machineBusy)/float64(r.machineTotal),
			short(rest), short(time.Duration(r.perUser(float64(rest)))))
	}
	if r.exitCode() != 0 || r.synced < 0 {
		for i, s := range r.summaries {
			fmt.Fprintf(&b, "\n  child %d (exit %d) ended with:\n%s", i, r.exits[i], s)
		}
	}
	return b.String()
}

func kib(bytes float64) string {
	switch {
	case bytes >= 10<<20:
		return fmt.Sprintf("%.0f MiB", bytes/(1<<20))
	case bytes >= 10<<10:
		return fmt.Sprintf("%.0f KiB", bytes/(1<<10))
	default:
		return fmt.Sprintf("%.0f B", bytes)
	}
}

// short rounds d to about three significant digits.
func short(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= 10*time.Millisecond:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(10 * time.Microsecond).String()
	}
}

// walProbe measures the WAL one database writes on a server others write to as well: a
// temporary physical replication slot keeps the segments from being recycled during the run
// (it goes away with the probe's session, however the harness ends), and pg_walinspect then
// sums the records that touch this database's relations, plus their transactions' commits.
type walProbe struct {
	tb    testing.TB
	conn  *pgx.Conn
	pid   uint32
	start string
	err   error
}

func (w *world) startWAL() *walProbe {
	ctx := context.Background()
	p := &walProbe{tb: w.tb}
	c, err := pgx.Connect(ctx, w.dsn)
	if err != nil {
		w.tb.Fatalf("connect for WAL: %v", err)
	}
	p.conn, p.pid = c, c.PgConn().PID()
	if _, err := c.Exec(ctx, `create extension if not exists pg_walinspect`); err != nil {
		p.err = fmt.Errorf("pg_walinspect: %w", err)
		return p
	}
	if _, err := c.Exec(ctx, `select pg_create_physical_replication_slot('scalebench_' || pg_backend_pid(), true, true)`); err != nil {
		p.err = fmt.Errorf("temporary replication slot: %w", err)
		return p
	}
	if err := c.QueryRow(ctx, `select pg_current_wal_lsn()::text`).Scan(&p.start); err != nil {
		p.err = fmt.Errorf("read WAL position: %w", err)
	}
	return p
}

// finish returns the WAL the database's relations and transactions took since the start: its
// bytes, the full-page images among them, and the largest kinds of record; or a note saying why
// they could not be told apart from the cluster's.
func (p *walProbe) finish() (walUse, string) {
	var u walUse
	if p.err != nil {
		return u, p.err.Error()
	}
	rows, err := p.conn.Query(context.Background(), `
		with r as (
			select xid, resource_manager || '/' || record_type as kind, record_length, fpi_length,
				coalesce(block_ref, '') ~ ('rel \d+/' || (select oid from pg_database where datname = current_database()) || '/') as mine
			from pg_get_wal_records_info($1::pg_lsn, pg_current_wal_flush_lsn())
		)
		select kind, count(*), sum(record_length)::bigint, sum(fpi_length)::bigint from r
		where mine or (xid <> '0' and xid in (select xid from r where mine))
		group by kind order by 3 desc`, p.start)
	if err != nil {
		return u, fmt.Sprintf("read WAL records: %v", err)
	}
	defer rows.Close()
	for rows.Next() {
		var kind string
		var n, bytes, fpi int64
		if err := rows.Scan(&kind, &n, &bytes, &fpi); err != nil {
			return u, fmt.Sprintf("read WAL records: %v", err)
		}
		u.bytes += bytes
		u.fpi += fpi
		if len(u.top) < 4 {
			u.top = append(u.top, fmt.Sprintf("%s %d× %s", kind, n, kib(float64(bytes))))
		}
	}
	if err := rows.Err(); err != nil {
		return u, fmt.Sprintf("read WAL records: %v", err)
	}
	return u, ""
}

// walUse is the WAL one run wrote for its database.
type walUse struct {
	bytes, fpi int64    // all of it, and the full-page images in it
	top        []string // the largest kinds of record: "Heap/INSERT 1000× 120 KiB"
}

func (p *walProbe) close() { _ = p.conn.Close(context.Background()) }

// peakRSS follows a child's VmHWM (its resident high-water mark) in /proc while it runs. The
// child's rusage cannot be used: Go starts children with CLONE_VM, and at exec Linux records the
// parent's high-water RSS as the child's ru_maxrss, so every child would report the benchmark
// process's own peak (the simulator's data set: 330–540 MiB at 10,000 users), not its own.
// The last read before exit misses at most one interval of growth.
type peakRSS struct {
	done chan struct{}
	out  chan int64
}

const rssInterval = 10 * time.Millisecond

func watchRSS(pid int) *peakRSS {
	p := &peakRSS{done: make(chan struct{}), out: make(chan int64, 1)}
	go func() {
		var peak int64
		t := time.NewTicker(rssInterval)
		defer t.Stop()
		for {
			peak = max(peak, vmHWM(pid))
			select {
			case <-p.done:
				p.out <- peak
				return
			case <-t.C:
			}
		}
	}()
	return p
}

// stop ends the watch and returns the highest VmHWM read, in bytes.
func (p *peakRSS) stop() int64 {
	close(p.done)
	return <-p.out
}

// vmHWM reads /proc/<pid>/status's VmHWM in bytes; 0 once the process is gone.
func vmHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kib, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kib << 10
		}
	}
	return 0
}

// selfCPU is this process's user + system CPU so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuTimes is the machine's CPU time so far, all cores: busy (everything but idle and iowait)
// and in all.
type cpuTimes struct{ busy, total time.Duration }

// machineCPU reads /proc/stat's cpu line (clock ticks of 1/100 s); zero when it cannot.
func machineCPU() cpuTimes {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	fields := strings.Fields(line)
	if len(fields) < 6 || fields[0] != "cpu" {
		return cpuTimes{}
	}
	var t cpuTimes
	for i, f := range fields[1:min(len(fields), 9)] { // user … steal; guest is counted in user
		n, _ := strconv.ParseInt(f, 10, 64)
		d := time.Duration(n) * 10 * time.Millisecond
		t.total += d
		if i != 3 && i != 4 { // idle, iowait
			t.busy += d
		}
	}
	return t
}

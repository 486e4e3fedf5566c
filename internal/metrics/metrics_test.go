package metrics_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"

	"github.com/usage-sync/usage-sync/internal/metrics"
	"github.com/usage-sync/usage-sync/internal/pgtest"
	"github.com/usage-sync/usage-sync/internal/simulator"
	"github.com/usage-sync/usage-sync/internal/store"
	"github.com/usage-sync/usage-sync/internal/syncer"
	"github.com/usage-sync/usage-sync/internal/upstream"
)

// scrape is one gather of the registry, indexed for the assertions below.
type scrape map[string]*dto.MetricFamily

func gather(t *testing.T, reg prometheus.Gatherer) scrape {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := scrape{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// sum adds the values of name's series whose labels include every pair of match.
func (s scrape) sum(name string, match ...string) float64 {
	mf, ok := s[name]
	if !ok {
		return -1
	}
	var total float64
	for _, m := range mf.GetMetric() {
		if !matches(m, match...) {
			continue
		}
		switch {
		case m.Counter != nil:
			total += m.GetCounter().GetValue()
		case m.Gauge != nil:
			total += m.GetGauge().GetValue()
		case m.Histogram != nil:
			total += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return total
}

// matches reports whether m's labels include every name, value pair of match.
func matches(m *dto.Metric, match ...string) bool {
	labels := map[string]string{}
	for _, l := range m.GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	for i := 0; i+1 < len(match); i += 2 {
		if labels[match[i]] != match[i+1] {
			return false
		}
	}
	return true
}

func q(t *testing.T, db *pgxpool.Pool, sql string, args ...any) float64 {
	t.Helper()
	var v float64
	if err := db.QueryRow(context.Background(), sql, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}

// Real cycles against the simulator over HTTP, with 429s, 500s, a user that keeps failing, a
// balance too small for the usage, then a shadow-mode cycle: every number the metrics show is
// checked against what the simulator saw and what the database holds.
func TestMetricsAfterRealCycles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, dsn := pgtest.Open(t, pgtest.Plain)
	db := pgtest.Pool(t, dsn)
	sim := simulator.New(simulator.Config{Seed: 71, Users: 4, KeysPerUser: 2, TasksPerUser: 3, HistoryDays: 2, AdminToken: "adm-secret"})
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(srv.Close)
	users := sim.Users()
	for i, u := range users {
		balance := 1_000_000
		if i == 3 {
			balance = 5 // shortfall
		}
		if _, err := db.Exec(ctx, `insert into profiles (user_id) values ($1); `, u); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(ctx, `insert into user_credits (user_id, credits_remaining) values ($1, $2)`, u, balance); err != nil {
			t.Fatal(err)
		}
	}
	// A sync_state row of a user no longer in profiles, enrolled long ago: not counted in the age.
	if _, err := db.Exec(ctx, `insert into sync_state (user_id, enrolled_at) values (gen_random_uuid(), now() - interval '30 days')`); err != nil {
		t.Fatal(err)
	}
	sim.SetFault(users[0], simulator.Fault{Status: 429, Times: 2})
	sim.SetFault(users[1], simulator.Fault{Status: 500, Times: 2})
	sim.SetFault(users[2], simulator.Fault{Status: 500}) // every request: the user fails

	m := metrics.New(st, nil)
	client := func() *upstream.Client {
		c, err := upstream.New(upstream.Config{BaseURL: srv.URL + "/api/v1", AdminToken: "adm-secret", RequestTimeout: 5 * time.Second,
			MaxElapsed: 2 * time.Second, MaxRetryAfter: time.Second, InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Observer: m,
			MaxInFlight: 3, RateLimit: 1e6, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	chargeFrom := time.Now().UTC().AddDate(0, 0, -3)
	opts := syncer.Options{Concurrency: 2, ChargeEnabled: true, ChargeFrom: &chargeFrom, Observer: m}
	if sum, err := syncer.New(st, client(), nil, opts).RunCycle(ctx, syncer.CycleOptions{Trigger: "test"}); err != nil || sum.Synced != 3 || sum.Failed != 1 {
		t.Fatalf("live cycle: %+v, %v", sum, err)
	}
	// users[2] was enrolled an hour ago and never succeeded: it is the oldest.
	if _, err := db.Exec(ctx, `update sync_state set enrolled_at = now() - interval '1 hour' where user_id = $1`, users[2]); err != nil {
		t.Fatal(err)
	}
	opts.ChargeEnabled = false // shadow rows now: counted by source, never in the credit totals
	if sum, err := syncer.New(st, client(), nil, opts).RunCycle(ctx, syncer.CycleOptions{All: true, Trigger: "test"}); err != nil || sum.Synced != 3 || sum.Failed != 1 {
		t.Fatalf("shadow cycle: %+v, %v", sum, err)
	}

	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	s := gather(t, m.Registry())

	for _, c := range []struct {
		name  string
		match []string
		want  float64
	}{
		{"usage_sync_cycles_total", []string{"outcome", "partial"}, 2},
		{"usage_sync_cycles_total", []string{"outcome", "ok"}, 0},
		{"usage_sync_cycles_total", []string{"outcome", "aborted"}, 0},
		{"usage_sync_cycle_duration_seconds", nil, 2},
		{"usage_sync_user_syncs_total", []string{"status", "ok"}, 6},
		{"usage_sync_user_syncs_total", []string{"status", "error"}, 2},
		{"usage_sync_user_syncs_total", []string{"status", "degraded"}, 0},
	} {
		if got := s.sum(c.name, c.match...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.match, got, c.want)
		}
	}
	if n := s.sum("usage_sync_upstream_requests_total", "code", "429"); n != 2 {
		t.Errorf("429s counted: %v, want the simulator's 2", n)
	}
	// users[1]'s two 500s, and users[2]'s every attempt until its budget ran out, twice.
	if n := s.sum("usage_sync_upstream_requests_total", "code", "500"); n < 2+2*2 {
		t.Errorf("500s counted: %v", n)
	}
	if n := s.sum("usage_sync_upstream_requests_total", "op", "tasks", "code", "200"); n < 3 {
		t.Errorf("task listings counted: %v", n)
	}
	for _, op := range []string{"keys", "usage"} {
		if n := s.sum("usage_sync_upstream_requests_total", "op", op, "code", "200"); n < 3 {
			t.Errorf("%s 200s counted: %v", op, n)
		}
	}
	// Every failed attempt but the last of each call was retried.
	failed := s.sum("usage_sync_upstream_requests_total", "code", "429") + s.sum("usage_sync_upstream_requests_total", "code", "500")
	if r := s.sum("usage_sync_upstream_retries_total"); r < 4 || r > failed {
		t.Errorf("retries %v, failed attempts %v", r, failed)
	}
	// Every attempt waited for the limiter (briefly: a million a second), and none is in flight.
	if w, a := s.sum("usage_sync_upstream_rate_limit_wait_seconds"), s.sum("usage_sync_upstream_requests_total"); w != a || a == 0 {
		t.Errorf("%v limiter waits observed for %v attempts", w, a)
	}
	if n := s.sum("usage_sync_upstream_requests_in_flight"); n != 0 {
		t.Errorf("%v requests in flight after the cycles", n)
	}

	// The ledger, source by source, and the credit totals without the shadow rows.
	rows, err := db.Query(ctx, `select source, count(*)::float8 from credit_ledger group by source`)
	if err != nil {
		t.Fatal(err)
	}
	dbSources := map[string]float64{}
	for rows.Next() {
		var src string
		var n float64
		if err := rows.Scan(&src, &n); err != nil {
			t.Fatal(err)
		}
		dbSources[src] = n
	}
	rows.Close()
	if dbSources["shadow:key_requests"] == 0 || dbSources["key_requests"] == 0 {
		t.Fatalf("the test needs live and shadow rows: %v", dbSources)
	}
	for _, m := range s["usage_sync_ledger_rows_total"].GetMetric() {
		src := m.GetLabel()[0].GetValue()
		if got, want := m.GetCounter().GetValue(), dbSources[src]; got != want {
			t.Errorf("ledger rows %s = %v, database has %v", src, got, want)
		}
		delete(dbSources, src)
	}
	if len(dbSources) > 0 {
		t.Errorf("sources in the ledger without a metric: %v", dbSources)
	}
	live := `from credit_ledger where source not like 'shadow:%'`
	charged, debited := q(t, db, `select coalesce(sum(amount), 0)::float8 `+live), q(t, db, `select coalesce(sum(debited), 0)::float8 `+live)
	if got := s.sum("usage_sync_credits_charged_total"); got != charged {
		t.Errorf("charged %v, ledger %v", got, charged)
	}
	if got := s.sum("usage_sync_credits_debited_total"); got != debited {
		t.Errorf("debited %v, ledger %v", got, debited)
	}
	if got := s.sum("usage_sync_credits_shortfall_total"); got != charged-debited || got <= 0 {
		t.Errorf("shortfall %v, ledger %v (the small balance must leave one)", got, charged-debited)
	}

	if ts := s.sum("usage_sync_last_cycle_success_timestamp_seconds"); ts < float64(time.Now().Add(-time.Hour).Unix()) {
		t.Errorf("last cycle success %v", ts)
	}
	if age := s.sum("usage_sync_oldest_success_age_seconds"); age < 3600 || age >= 4*3600 {
		t.Errorf("oldest success age %v: want users[2]'s hour since enrolment, not the deleted user's 30 days", age)
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if _, ok := s[name]; !ok {
			t.Errorf("no %s: the Go and process collectors are missing", name)
		}
	}
	// No user id and no secret in any label.
	for _, mf := range s {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				for _, bad := range append([]string{"adm-secret"}, users...) {
					if strings.Contains(l.GetValue(), bad) {
						t.Errorf("%s has label %s=%q", mf.GetName(), l.GetName(), l.GetValue())
					}
				}
			}
		}
	}
}

// A single user's cycle (webhook, request_sync) does not move the last-cycle-success gauge, and a
// cycle that could not run counts as aborted.
func TestCycleOutcomes(t *testing.T) {
	t.Parallel()
	m := metrics.New(nil, nil)
	m.CycleDone(syncer.CycleOptions{UserID: "u"}, syncer.Summary{Synced: 1}, time.Second, nil)
	s := gather(t, m.Registry())
	if v := s.sum("usage_sync_last_cycle_success_timestamp_seconds"); v != 0 {
		t.Fatalf("a single-user cycle set the gauge: %v", v)
	}
	m.CycleDone(syncer.CycleOptions{}, syncer.Summary{Synced: 2, Skipped: 1, Abandoned: 1}, time.Second, context.Canceled)
	s = gather(t, m.Registry())
	if v := s.sum("usage_sync_cycles_total", "outcome", "aborted"); v != 1 {
		t.Fatalf("aborted = %v", v)
	}
	if v := s.sum("usage_sync_last_cycle_success_timestamp_seconds"); v != 0 {
		t.Fatalf("an aborted cycle set the gauge: %v", v)
	}
	if s.sum("usage_sync_user_syncs_total", "status", "skipped") != 1 || s.sum("usage_sync_user_syncs_total", "status", "abandoned") != 1 ||
		s.sum("usage_sync_user_syncs_total", "status", "ok") != 3 {
		t.Fatalf("user syncs: %v", s["usage_sync_user_syncs_total"])
	}
	if _, ok := s["usage_sync_oldest_success_age_seconds"]; ok {
		t.Fatal("no age source, yet an age")
	}
}

// Every labelled series the alert rules use exists at 0 before anything happened, so the first
// increment after a scrape is a rise from 0 that increase() and rate() see.
func TestSeriesAtZeroFromStart(t *testing.T) {
	t.Parallel()
	s := gather(t, metrics.New(nil, nil).Registry())
	has := func(name string, match ...string) {
		t.Helper()
		if v := s.sum(name, match...); v != 0 {
			t.Errorf("%s%v = %v, want a series at 0", name, match, v)
		}
		for _, m := range s[name].GetMetric() {
			if matches(m, match...) {
				return
			}
		}
		t.Errorf("no series %s%v at start", name, match)
	}
	for _, o := range []string{"ok", "partial", "aborted"} {
		has("usage_sync_cycles_total", "outcome", o)
	}
	for _, st := range []string{"ok", "degraded", "error", "skipped", "abandoned"} {
		has("usage_sync_user_syncs_total", "status", st)
	}
	for _, op := range []string{"keys", "usage", "tasks"} {
		has("usage_sync_upstream_retries_total", "op", op)
		for _, code := range []string{"200", "401", "403", "429", "500", "error"} {
			has("usage_sync_upstream_requests_total", "op", op, "code", code)
		}
	}
	has("usage_sync_upstream_requests_in_flight")
	has("usage_sync_upstream_rate_limit_wait_seconds")
	for _, src := range store.LedgerSources() {
		has("usage_sync_ledger_rows_total", "source", src)
		has("usage_sync_ledger_rows_total", "source", store.ShadowPrefix+src)
	}
}

// The database-backed gauges never vanish: while the database is cut away or hangs, the scrape
// answers within its bound, usage_sync_database_up is 0, the oldest-success age goes on from its
// last reading (that value plus the time since) and the counts keep their last reading; once the
// database answers, the readings are fresh again.
func TestDatabaseGaugesDuringAnOutage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, direct := pgtest.Open(t, pgtest.Plain)
	proxy, dsn := pgtest.NewProxy(t, direct)
	st, err := store.Open(ctx, dsn, store.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	db := pgtest.Pool(t, direct)
	if _, err := db.Exec(ctx, `
		insert into profiles (user_id) select gen_random_uuid() from generate_series(1, 3);
		insert into sync_state (user_id, enrolled_at, status) select user_id, now() - interval '2 hours', 'error' from profiles limit 1;
		insert into sync_state (user_id, enrolled_at, last_success_at, status)
			select user_id, now() - interval '1 day', now() - interval '1 minute', 'ok' from profiles
			where user_id not in (select user_id from sync_state)`); err != nil {
		t.Fatal(err)
	}
	m := metrics.New(st, nil)
	now := time.Now()
	m.SetClock(func() time.Time { return now })
	s := gather(t, m.Registry())
	age := s.sum("usage_sync_oldest_success_age_seconds")
	if s.sum("usage_sync_database_up") != 1 || age < 7200 || age > 7300 ||
		s.sum("usage_sync_users_enrolled") != 3 || s.sum("usage_sync_users_in_error") != 1 {
		t.Fatalf("with the database up: up %v, age %v, enrolled %v, in error %v", s.sum("usage_sync_database_up"), age,
			s.sum("usage_sync_users_enrolled"), s.sum("usage_sync_users_in_error"))
	}
	for _, cut := range []struct {
		name string
		set  func(bool)
	}{{"cut", proxy.SetDown}, {"hung", proxy.SetHung}} {
		cut.set(true)
		now = now.Add(100 * time.Second)
		start := time.Now()
		s = gather(t, m.Registry())
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("%s: a scrape took %s, beyond its bound", cut.name, took)
		}
		if got := s.sum("usage_sync_oldest_success_age_seconds"); got != age+100 {
			t.Errorf("%s: age %v, want the last reading %v plus the 100 s since", cut.name, got, age)
		}
		if s.sum("usage_sync_database_up") != 0 || s.sum("usage_sync_users_enrolled") != 3 || s.sum("usage_sync_users_in_error") != 1 {
			t.Errorf("%s: up %v, enrolled %v, in error %v; want 0 and the last readings", cut.name,
				s.sum("usage_sync_database_up"), s.sum("usage_sync_users_enrolled"), s.sum("usage_sync_users_in_error"))
		}
		age += 100
		cut.set(false)
	}
	proxy.SetDown(true) // drops the connections the hang held
	proxy.SetDown(false)
	for range 5 { // each failed scrape drops a dead pooled connection
		if s = gather(t, m.Registry()); s.sum("usage_sync_database_up") == 1 {
			break
		}
	}
	if s.sum("usage_sync_database_up") != 1 || s.sum("usage_sync_oldest_success_age_seconds") > 7300 {
		t.Fatalf("after the outage: up %v, age %v; want a fresh reading", s.sum("usage_sync_database_up"), s.sum("usage_sync_oldest_success_age_seconds"))
	}
}

// hungSource is a database that does not answer until released: each read reports that it
// started, then blocks until release is closed or its deadline passes.
type hungSource struct {
	started chan struct{}
	release chan struct{}
}

func (h hungSource) read(ctx context.Context) (float64, bool, error) {
	h.started <- struct{}{}
	select {
	case <-h.release:
		return 0, false, context.Canceled
	case <-ctx.Done():
		return 0, false, ctx.Err()
	}
}

func (h hungSource) OldestSuccessAge(ctx context.Context) (float64, bool, error) { return h.read(ctx) }
func (h hungSource) UsersEnrolled(ctx context.Context) (float64, bool, error)    { return h.read(ctx) }
func (h hungSource) UsersInError(ctx context.Context) (float64, bool, error)     { return h.read(ctx) }
func (h hungSource) PausedUsers(ctx context.Context) (int64, error) {
	_, _, err := h.read(ctx)
	return 0, err
}

// A scrape that comes while another's database read hangs does not queue behind it: it answers
// at once with the held values, so concurrent scrapes never add up their waits.
func TestConcurrentScrapesDoNotQueueOnTheDatabase(t *testing.T) {
	t.Parallel()
	h := hungSource{started: make(chan struct{}, 4), release: make(chan struct{})}
	m := metrics.New(h, nil)
	m.SetScrapeQueryTimeout(time.Hour) // only release ends the first read
	first := make(chan scrape, 1)
	go func() {
		mfs, _ := m.Registry().Gather() // a collector's failure shows as missing series below
		out := scrape{}
		for _, mf := range mfs {
			out[mf.GetName()] = mf
		}
		first <- out
	}()
	<-h.started // the first scrape's read is in flight, and hangs
	s := gather(t, m.Registry())
	select {
	case <-first:
		t.Fatal("the second scrape returned only after the first")
	default:
	}
	if v := s.sum("usage_sync_database_up"); v != 0 {
		t.Errorf("database_up = %v while the database hangs, want 0", v)
	}
	select {
	case <-h.started:
		t.Fatal("the second scrape read the database too")
	default:
	}
	close(h.release)
	if v := (<-first).sum("usage_sync_database_up"); v != 0 {
		t.Errorf("the first scrape: database_up = %v, want 0", v)
	}
}

package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"sigs.k8s.io/yaml"

	"github.com/usage-sync/usage-sync/internal/metrics"
	"github.com/usage-sync/usage-sync/internal/pgtest"
	"github.com/usage-sync/usage-sync/internal/simulator"
	"github.com/usage-sync/usage-sync/internal/store"
	"github.com/usage-sync/usage-sync/internal/syncer"
	"github.com/usage-sync/usage-sync/internal/upstream"
)

const rulesFile = "prometheus/alerts.yaml"

// promtool is the rule checker from Debian's prometheus package; .ci/run installs it.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed (apt-get install prometheus; .ci/run installs it): alert rules not checked")
	}
	return p
}

type rule struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	KeepFiring  string            `json:"keep_firing_for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

func loadRules(t *testing.T) map[string]rule {
	t.Helper()
	raw, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []rule `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.UnmarshalStrict(raw, &f); err != nil {
		t.Fatal(err)
	}
	out := map[string]rule{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			out[r.Alert] = r
		}
	}
	return out
}

func TestAlertRulesCheck(t *testing.T) {
	out, err := exec.Command(promtool(t), "check", "rules", rulesFile).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	rules := loadRules(t)
	for _, name := range []string{"UsageSyncDown", "UsageSyncDatabaseUnreachable", "UsageSyncAllSyncsFailing", "UsageSyncNoSuccessfulCycle", "UsageSyncOldestSuccessTooOld", "UsageSyncUserErrorsRising",
		"UsageSyncShortfallGrowing", "UsageSyncUpstreamErrors", "UsageSyncUpstreamRateLimited", "UsageSyncKeyChargingHalted"} {
		r, ok := rules[name]
		if !ok {
			t.Errorf("no alert %s", name)
			continue
		}
		anchor := "docs/operations.md#" + strings.ToLower(name)
		if !strings.HasSuffix(r.Annotations["runbook_url"], anchor) {
			t.Errorf("%s: runbook_url %q does not end in %s", name, r.Annotations["runbook_url"], anchor)
		}
	}
	// Every runbook link lands on a heading of the runbook.
	doc, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range rules {
		if !strings.Contains(string(doc), "\n### "+name+"\n") {
			t.Errorf("docs/operations.md has no heading \"### %s\" for the runbook link", name)
		}
		// The alert table gives each alert's severity as the rule does.
		row := fmt.Sprintf("\n| [%s](#%s) | %s |", name, strings.ToLower(name), r.Labels["severity"])
		if !strings.Contains(string(doc), row) {
			t.Errorf("docs/operations.md's alert table has no row starting %q", strings.TrimSpace(row))
		}
	}
}

// series renders one scraped series as a promtool selector: name{label="value",...}.
func series(name string, m *dto.Metric) string {
	var ls []string
	for _, l := range m.GetLabel() {
		ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
	}
	sort.Strings(ls)
	return name + "{" + strings.Join(ls, ",") + "}"
}

func value(m *dto.Metric) float64 {
	if m.Counter != nil {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}

// scrapeValues gathers every usage_sync_ counter and gauge.
func scrapeValues(t *testing.T, m *metrics.Metrics) map[string]float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "usage_sync_") || (mf.GetType() != dto.MetricType_COUNTER && mf.GetType() != dto.MetricType_GAUGE) {
			continue
		}
		for _, x := range mf.GetMetric() {
			out[series(mf.GetName(), x)] = value(x)
		}
	}
	return out
}

// scrapes are a real run's scrapes after its first and its second cycle, and, for realRun, one
// taken while its database was cut away.
type scrapes struct{ first, second, outage map[string]float64 }

// newRun is a simulator with the given users, their profiles and balances, and metrics that read
// the database through a proxy the run can cut.
func newRun(t *testing.T, seed int64, balances []int) (*simulator.Sim, *httptest.Server, *store.Store, *metrics.Metrics, *pgtest.Proxy) {
	t.Helper()
	ctx := context.Background()
	st, dsn := pgtest.Open(t, pgtest.Plain)
	db := pgtest.Pool(t, dsn)
	sim := simulator.New(simulator.Config{Seed: seed, Users: len(balances), KeysPerUser: 2, TasksPerUser: 2, HistoryDays: 2, AdminToken: "adm"})
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(srv.Close)
	for i, id := range sim.Users() {
		if _, err := db.Exec(ctx, `insert into profiles (user_id) values ($1)`, id); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(ctx, `insert into user_credits (user_id, credits_remaining) values ($1, $2)`, id, balances[i]); err != nil {
			t.Fatal(err)
		}
	}
	proxy, viaProxy := pgtest.NewProxy(t, dsn)
	scrapeStore, err := store.Open(ctx, viaProxy, store.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(scrapeStore.Close)
	return sim, srv, st, metrics.New(scrapeStore, nil), proxy
}

func newSyncer(t *testing.T, srv *httptest.Server, st *store.Store, m *metrics.Metrics) *syncer.Syncer {
	t.Helper()
	up, err := upstream.New(upstream.Config{BaseURL: srv.URL + "/api/v1", AdminToken: "adm", RequestTimeout: 5 * time.Second,
		MaxElapsed: 200 * time.Millisecond, MaxRetryAfter: time.Second, InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Observer: m, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	from := time.Now().UTC().AddDate(0, 0, -3)
	return syncer.New(st, up, nil, syncer.Options{Concurrency: 2, ChargeEnabled: true, ChargeFrom: &from, Observer: m})
}

// realRun syncs four simulated users through two live cycles, the way production fails: one
// user's upstream answers 500, one's 429, one has too few credits, and one's key totals turn
// inconsistent before the second cycle (the guard halts its charging). Then the database is cut
// away from the metrics and scraped once more.
func realRun(t *testing.T) scrapes {
	t.Helper()
	ctx := context.Background()
	sim, srv, st, m, proxy := newRun(t, 91, []int{1_000_000, 1_000_000, 1_000_000, 1})
	u := sim.Users()
	sim.SetFault(u[1], simulator.Fault{Status: 500})
	sim.SetFault(u[2], simulator.Fault{Status: 429})
	sy := newSyncer(t, srv, st, m)
	if _, err := sy.RunCycle(ctx, syncer.CycleOptions{}); err != nil {
		t.Fatal(err)
	}
	var out scrapes
	out.first = scrapeValues(t, m)
	// New usage for u[0] (with windows answering lifetime totals: the guard's case) and u[3].
	for _, id := range []string{u[0], u[3]} {
		for _, k := range sim.Keys(id) {
			sim.AddRequests(id, k.ID, time.Now().Add(-time.Minute))
		}
	}
	sim.SetLifetimeInWindows(u[0], true)
	if sum, err := sy.RunCycle(ctx, syncer.CycleOptions{All: true}); err != nil || sum.Degraded != 1 || sum.Failed != 2 {
		t.Fatalf("second cycle: %+v, %v; want u[0] degraded, u[1] and u[2] failed", sum, err)
	}
	out.second = scrapeValues(t, m)
	proxy.SetDown(true)
	out.outage = scrapeValues(t, m)
	return out
}

// refusedRun is the admin token refused for every user (401): two cycles, the second retrying
// the failed users at once.
func refusedRun(t *testing.T) scrapes {
	t.Helper()
	ctx := context.Background()
	sim, srv, st, m, _ := newRun(t, 92, []int{1_000_000, 1_000_000, 1_000_000})
	for _, id := range sim.Users() {
		sim.SetFault(id, simulator.Fault{Status: 401})
	}
	sy := newSyncer(t, srv, st, m)
	var out scrapes
	for i, o := range []syncer.CycleOptions{{}, {All: true}} {
		if sum, err := sy.RunCycle(ctx, o); err != nil || sum.Failed != 3 {
			t.Fatalf("refused cycle %d: %+v, %v; want every user failed", i, sum, err)
		}
		if i == 0 {
			out.first = scrapeValues(t, m)
		}
	}
	out.second = scrapeValues(t, m)
	return out
}

type inputSeries struct {
	Series string `json:"series"`
	Values string `json:"values"`
}

type expAlert struct {
	ExpLabels      map[string]string `json:"exp_labels"`
	ExpAnnotations map[string]string `json:"exp_annotations"`
}

type alertTest struct {
	EvalTime  string     `json:"eval_time"`
	Alertname string     `json:"alertname"`
	ExpAlerts []expAlert `json:"exp_alerts"`
}

type testGroup struct {
	Name          string        `json:"name"`
	Interval      string        `json:"interval"`
	InputSeries   []inputSeries `json:"input_series"`
	AlertRuleTest []alertTest   `json:"alert_rule_test"`
}

// instance is the scraped worker's target labels, on every input series.
const instance = `instance="10.0.0.7:9464",job="usage-sync"`

// timeline renders f at steps 0..n as promtool's explicit values.
func timeline(n int, f func(step int) float64) string {
	vs := make([]string, n+1)
	for i := range vs {
		vs[i] = fmt.Sprintf("%g", f(i))
	}
	return strings.Join(vs, " ")
}

// withTarget adds the target labels to a scraped series name{...}.
func withTarget(s string) string {
	if strings.HasSuffix(s, "{}") {
		return strings.TrimSuffix(s, "}") + instance + "}"
	}
	return strings.TrimSuffix(s, "}") + "," + instance + "}"
}

// scenario turns a real run's scrapes into input series over n steps: every counter starts at 0
// (the series exist from the start) and grows by what the run's second cycle added at each step
// where cycles(step) counts one more cycle; gauges come from gauge(name, step).
func scenario(sc scrapes, n int, cycles func(step int) int, gauge func(name string, step int) (float64, bool)) []inputSeries {
	names := make([]string, 0, len(sc.second))
	for s := range sc.second {
		names = append(names, s)
	}
	sort.Strings(names)
	var out []inputSeries
	for _, s := range names {
		name := s[:strings.IndexByte(s, '{')]
		if isGauge(name) {
			if _, ok := gauge(name, 0); ok {
				out = append(out, inputSeries{withTarget(s), timeline(n, func(i int) float64 { v, _ := gauge(name, i); return v })})
			}
			continue
		}
		first, delta := sc.first[s], sc.second[s]-sc.first[s]
		out = append(out, inputSeries{withTarget(s), timeline(n, func(i int) float64 {
			c := cycles(i)
			if c == 0 {
				return 0
			}
			return first + delta*float64(c-1)
		})})
	}
	return out
}

// isGauge reports whether a usage_sync_ metric is one of the gauges (not a counter).
func isGauge(name string) bool { return !strings.HasSuffix(name, "_total") }

// The alert rules evaluated by promtool on series taken from real runs' scrapes: counters grow
// by what a run's second cycle added, once per cycle, so every rate is one production produced;
// the scrape-time gauges are the ones the runs read. Each situation of issue 17 is one group,
// checked against every alert at every evaluation time it names.
func TestAlertRulesAgainstARealScrape(t *testing.T) {
	tool := promtool(t)
	rules := loadRules(t)
	run := realRun(t)
	first, second := run.first, run.second
	for _, want := range []string{
		`usage_sync_user_syncs_total{status="error"}`, `usage_sync_user_syncs_total{status="degraded"}`,
		`usage_sync_credits_shortfall_total{}`, `usage_sync_upstream_requests_total{code="429",op="keys"}`,
		`usage_sync_upstream_requests_total{code="500",op="keys"}`,
	} {
		if second[want]-first[want] <= 0 {
			t.Fatalf("the real run's second cycle did not move %s (%v -> %v); the test needs it", want, first[want], second[want])
		}
	}
	age, outageAge := second[`usage_sync_oldest_success_age_seconds{}`], run.outage[`usage_sync_oldest_success_age_seconds{}`]
	if second[`usage_sync_database_up{}`] != 1 || run.outage[`usage_sync_database_up{}`] != 0 || outageAge < age {
		t.Fatalf("scrapes before and during the cut: up %v then %v, age %v then %v; want 1, 0 and an age that went on",
			second[`usage_sync_database_up{}`], run.outage[`usage_sync_database_up{}`], age, outageAge)
	}
	if second[`usage_sync_users_in_error{}`] != 2 || run.outage[`usage_sync_users_in_error{}`] != 2 || second[`usage_sync_users_enrolled{}`] != 4 {
		t.Fatalf("users in error %v (during the cut %v) of %v; want 2 of 4 throughout", second[`usage_sync_users_in_error{}`],
			run.outage[`usage_sync_users_in_error{}`], second[`usage_sync_users_enrolled{}`])
	}
	refused := refusedRun(t)
	if d := refused.second[`usage_sync_upstream_requests_total{code="401",op="keys"}`] - refused.first[`usage_sync_upstream_requests_total{code="401",op="keys"}`]; d <= 0 {
		t.Fatalf("the refused run's second cycle counted no 401 (%v)", d)
	}

	const minutes = 300
	every := func(i int) int { return i } // a cycle a minute; the first at step 1
	up := inputSeries{`up{` + instance + `}`, fmt.Sprintf("1x%d", minutes)}
	startedAt := func(min int) inputSeries {
		return inputSeries{`process_start_time_seconds{` + instance + `}`, fmt.Sprintf("%dx%d", min*60, minutes)}
	}
	// from reads a scrape's gauge; the cycle gauge and the age are the scenario's own.
	from := func(sc map[string]float64) func(string, int) (float64, bool) {
		return func(name string, i int) (float64, bool) {
			v, ok := sc[name+"{}"]
			return v, ok
		}
	}
	ageGrowing := func(base float64) func(int) float64 { return func(i int) float64 { return base + 60*float64(i) } }
	gauges := func(sc map[string]float64, lastCycle, oldest func(int) float64, dbUp func(int) float64) func(string, int) (float64, bool) {
		return func(name string, i int) (float64, bool) {
			switch name {
			case "usage_sync_last_cycle_success_timestamp_seconds":
				return lastCycle(i), true
			case "usage_sync_oldest_success_age_seconds":
				return oldest(i), true
			case "usage_sync_database_up":
				return dbUp(i), true
			}
			return from(sc)(name, i)
		}
	}
	always := func(v float64) func(int) float64 { return func(int) float64 { return v } }
	cycleEveryMinute := func(i int) float64 { return 60 * float64(i) }

	fires := func(name string) expAlert {
		return expAlert{ExpLabels: rules[name].Labels, ExpAnnotations: rules[name].Annotations}
	}
	// expect checks every rule at each time: those named fire, the rest do not.
	expect := func(firing map[string][]string) []alertTest {
		var out []alertTest
		for at, names := range firing {
			for name := range rules {
				a := alertTest{EvalTime: at, Alertname: name, ExpAlerts: []expAlert{}}
				for _, n := range names {
					if n == name {
						a.ExpAlerts = []expAlert{fires(name)}
					}
				}
				out = append(out, a)
			}
		}
		sort.Slice(out, func(i, j int) bool {
			if out[i].EvalTime != out[j].EvalTime {
				return out[i].EvalTime < out[j].EvalTime
			}
			return out[i].Alertname < out[j].Alertname
		})
		return out
	}
	withSeries := func(in []inputSeries, more ...inputSeries) []inputSeries { return append(in, more...) }

	// The running failures: two users of four failing, a 429 user, a shortfall, a halted key.
	running := withSeries(scenario(run, minutes, every, gauges(second, cycleEveryMinute, ageGrowing(age), always(1))), up, startedAt(0))

	// A restart at minute 61 whose first cycle ends at minute 78 (the daemon runs none at start,
	// then the cycle takes 12 minutes): the cycle gauge is 0 meanwhile.
	restart := []inputSeries{
		{withTarget(`usage_sync_last_cycle_success_timestamp_seconds{}`), timeline(minutes, func(i int) float64 {
			if i > 60 && i < 78 {
				return 0
			}
			return 60 * float64(i)
		})},
		{withTarget(`usage_sync_database_up{}`), fmt.Sprintf("1x%d", minutes)},
		{`process_start_time_seconds{` + instance + `}`, timeline(minutes, func(i int) float64 {
			if i > 60 {
				return 61 * 60
			}
			return 0
		})},
		up,
	}

	// Every user refused (401) from minute 1, retried as the failure backoff allows (1, 2, 4 ...
	// up to 60 minutes, then the next 5-minute tick): the samples thin out while the fault
	// lasts, to one attempt in 65 minutes.
	attempts := []int{1, 6, 11, 16, 26, 46, 81, 146, 211, 276}
	refusedCycles := func(i int) int {
		n := 0
		for _, a := range attempts {
			if a <= i {
				n++
			}
		}
		return n
	}
	refusedGauges := func(name string, i int) (float64, bool) {
		switch name {
		case "usage_sync_users_in_error":
			if i == 0 {
				return 0, true
			}
		case "usage_sync_last_cycle_success_timestamp_seconds":
			return 300 * float64(i/5), true // partial cycles complete on the schedule
		case "usage_sync_oldest_success_age_seconds":
			return refused.second[name+"{}"] + 60*float64(i), true
		}
		return from(refused.second)(name, i)
	}
	refusedSeries := withSeries(scenario(refused, minutes, refusedCycles, refusedGauges), up, startedAt(0))

	// The database cut away at minute 10 until minute 160: counters stop, the age goes on from
	// its last reading, the counts hold theirs; at 160 it answers, and the next cycle ends at
	// 165 with a fresh age.
	outageCycles := func(i int) int {
		switch {
		case i <= 10:
			return i
		case i < 165:
			return 10
		}
		return i - 154
	}
	outageGauges := gauges(second,
		func(i int) float64 {
			if i > 10 && i < 165 {
				return 600
			}
			return 60 * float64(i)
		},
		func(i int) float64 {
			if i >= 165 {
				return age
			}
			return outageAge + 60*float64(i)
		},
		func(i int) float64 {
			if i > 10 && i < 160 {
				return run.outage[`usage_sync_database_up{}`]
			}
			return 1
		})
	outage := withSeries(scenario(run, minutes, outageCycles, outageGauges), up, startedAt(0))

	// Cycles stop although the database answers (the scheduler stuck, SYNC_ENABLED off).
	stalledCycles := func(i int) int { return min(i, 10) }
	stalled := withSeries(scenario(run, minutes, stalledCycles, gauges(second, always(600), ageGrowing(age), always(1))), up, startedAt(0))

	// A 45-second burst at minute 20 on a healthy upstream, scraped every 15 s: every attempt of
	// the burst fails, and is retried (three 500s for each 200 the run's cycle had): a fifth of the
	// 10-minute window's attempts.
	ok200, err500 := `usage_sync_upstream_requests_total{code="200",op="keys"}`, `usage_sync_upstream_requests_total{code="500",op="keys"}`
	okStep := second[ok200] - first[ok200]
	errStep := 3 * okStep
	const quarters = 4 * 60
	burst := []inputSeries{
		{withTarget(ok200), timeline(quarters, func(i int) float64 { return okStep * float64(i) })},
		{withTarget(err500), timeline(quarters, func(i int) float64 {
			return errStep * float64(min(max(i-80, 0), 3)) // steps 81, 82, 83: 45 s from minute 20
		})},
		{withTarget(`usage_sync_database_up{}`), fmt.Sprintf("1x%d", quarters)},
		{withTarget(`usage_sync_last_cycle_success_timestamp_seconds{}`), timeline(quarters, func(i int) float64 { return 15 * float64(i) })},
		{`up{` + instance + `}`, fmt.Sprintf("1x%d", quarters)},
	}

	groups := []testGroup{
		{Name: "the real run's failures, repeating", Interval: "1m", InputSeries: running, AlertRuleTest: expect(map[string][]string{
			"30m": {"UsageSyncUserErrorsRising", "UsageSyncShortfallGrowing", "UsageSyncUpstreamErrors", "UsageSyncUpstreamRateLimited", "UsageSyncKeyChargingHalted"},
		})},
		{Name: "a restart whose first cycle is slow does not page", Interval: "1m", InputSeries: restart, AlertRuleTest: expect(map[string][]string{
			"70m": nil, "77m": nil, "80m": nil, "100m": nil,
		})},
		{Name: "every user refused pages critical within the for: and stays firing while they fail", Interval: "1m", InputSeries: refusedSeries,
			AlertRuleTest: expect(map[string][]string{
				"4m":   nil,
				"7m":   {"UsageSyncAllSyncsFailing"},
				"20m":  {"UsageSyncAllSyncsFailing", "UsageSyncUserErrorsRising"},
				"130m": {"UsageSyncAllSyncsFailing", "UsageSyncUserErrorsRising", "UsageSyncOldestSuccessTooOld"},
				"145m": {"UsageSyncAllSyncsFailing", "UsageSyncUserErrorsRising", "UsageSyncOldestSuccessTooOld"}, // 64 min since an attempt
				"290m": {"UsageSyncAllSyncsFailing", "UsageSyncUserErrorsRising", "UsageSyncOldestSuccessTooOld"},
			})},
		{Name: "a database outage pages once, naming the database", Interval: "1m", InputSeries: outage, AlertRuleTest: expect(map[string][]string{
			"90m":  {"UsageSyncDatabaseUnreachable", "UsageSyncOldestSuccessTooOld", "UsageSyncUserErrorsRising"},
			"150m": {"UsageSyncDatabaseUnreachable", "UsageSyncOldestSuccessTooOld", "UsageSyncUserErrorsRising"},
			// Back at 160, the first cycle ends at 165: no late page for the cycles it missed.
			"164m": {"UsageSyncOldestSuccessTooOld", "UsageSyncUserErrorsRising"},
			"168m": {"UsageSyncUserErrorsRising", "UsageSyncShortfallGrowing", "UsageSyncKeyChargingHalted"},
		})},
		{Name: "cycles stop while the database answers", Interval: "1m", InputSeries: stalled, AlertRuleTest: expect(map[string][]string{
			"90m": {"UsageSyncNoSuccessfulCycle", "UsageSyncOldestSuccessTooOld", "UsageSyncUserErrorsRising"},
		})},
		{Name: "a 45 s burst of upstream errors does not page", Interval: "15s", InputSeries: burst, AlertRuleTest: expect(map[string][]string{
			"21m": nil, "25m": nil, "30m30s": nil, "35m": nil,
		})},
		{Name: "no worker answers", Interval: "1m",
			InputSeries:   []inputSeries{{`up{` + instance + `}`, fmt.Sprintf("0x%d", minutes)}},
			AlertRuleTest: expect(map[string][]string{"10m": {"UsageSyncDown"}}),
		},
	}
	// A database outage is one page: of the alerts firing in it, one is critical.
	for _, g := range groups[3].AlertRuleTest {
		if g.EvalTime == "90m" && len(g.ExpAlerts) > 0 && rules[g.Alertname].Labels["severity"] == "critical" && g.Alertname != "UsageSyncDatabaseUnreachable" {
			t.Fatalf("the outage pages with %s as well", g.Alertname)
		}
	}
	abs, err := filepath.Abs(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	file := map[string]any{"rule_files": []string{abs}, "evaluation_interval": "15s", "tests": groups}
	b, err := json.MarshalIndent(file, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "alerts_test.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tool, "test", "rules", path).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}

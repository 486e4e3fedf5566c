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
	"sigs.k8s.io/yaml"

	"github.com/usage-sync/usage-sync/internal/metrics"
	"github.com/usage-sync/usage-sync/internal/pgtest"
	"github.com/usage-sync/usage-sync/internal/simulator"
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
	for _, name := range []string{"UsageSyncDown", "UsageSyncNoSuccessfulCycle", "UsageSyncOldestSuccessTooOld", "UsageSyncUserErrorsRising",
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
	for name := range rules {
		if !strings.Contains(string(doc), "\n### "+name+"\n") {
			t.Errorf("docs/operations.md has no heading \"### %s\" for the runbook link", name)
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

// realRun syncs four simulated users through two live cycles, the way production fails: one
// user's upstream answers 500, one's 429, one has too few credits, and one's key totals turn
// inconsistent before the second cycle (the guard halts its charging). It returns the scrapes
// after the first and the second cycle.
func realRun(t *testing.T) (first, second map[string]float64) {
	t.Helper()
	ctx := context.Background()
	st, dsn := pgtest.Open(t, pgtest.Plain)
	db := pgtest.Pool(t, dsn)
	sim := simulator.New(simulator.Config{Seed: 91, Users: 4, KeysPerUser: 2, TasksPerUser: 2, HistoryDays: 2, AdminToken: "adm"})
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(srv.Close)
	u := sim.Users()
	for i, id := range u {
		balance := 1_000_000
		if i == 3 {
			balance = 1
		}
		if _, err := db.Exec(ctx, `insert into profiles (user_id) values ($1)`, id); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(ctx, `insert into user_credits (user_id, credits_remaining) values ($1, $2)`, id, balance); err != nil {
			t.Fatal(err)
		}
	}
	sim.SetFault(u[1], simulator.Fault{Status: 500})
	sim.SetFault(u[2], simulator.Fault{Status: 429})
	m := metrics.New(st, nil)
	up, err := upstream.New(upstream.Config{BaseURL: srv.URL + "/api/v1", AdminToken: "adm", RequestTimeout: 5 * time.Second,
		MaxElapsed: 200 * time.Millisecond, MaxRetryAfter: time.Second, InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Observer: m})
	if err != nil {
		t.Fatal(err)
	}
	from := time.Now().UTC().AddDate(0, 0, -3)
	sy := syncer.New(st, up, nil, syncer.Options{Concurrency: 2, ChargeEnabled: true, ChargeFrom: &from, Observer: m})
	if _, err := sy.RunCycle(ctx, syncer.CycleOptions{}); err != nil {
		t.Fatal(err)
	}
	first = scrapeValues(t, m)
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
	return first, scrapeValues(t, m)
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

// The alert rules evaluated by promtool on series taken from a real run's scrape: the counters
// grow each minute by what the run's second cycle added (as if that cycle repeated every
// minute), so every rate is one production produced. Three situations, each checked against
// every alert: the failing run itself, the database gone (cycles stop completing), and no
// worker at all.
func TestAlertRulesAgainstARealScrape(t *testing.T) {
	tool := promtool(t)
	rules := loadRules(t)
	first, second := realRun(t)
	for _, want := range []string{
		`usage_sync_user_syncs_total{status="error"}`, `usage_sync_user_syncs_total{status="degraded"}`,
		`usage_sync_credits_shortfall_total{}`, `usage_sync_upstream_requests_total{code="429",op="keys"}`,
		`usage_sync_upstream_requests_total{code="500",op="keys"}`,
	} {
		if second[want]-first[want] <= 0 {
			t.Fatalf("the real run's second cycle did not move %s (%v -> %v); the test needs it", want, first[want], second[want])
		}
	}
	const minutes = 120
	var running, stalled []inputSeries
	names := make([]string, 0, len(second))
	for s := range second {
		names = append(names, s)
	}
	sort.Strings(names)
	age := second[`usage_sync_oldest_success_age_seconds{}`]
	for _, s := range names {
		switch {
		case strings.HasPrefix(s, "usage_sync_last_cycle_success_timestamp_seconds"):
			// Running: a cycle completes every minute, so the gauge is the evaluation time.
			running = append(running, inputSeries{s, fmt.Sprintf("0+60x%d", minutes)})
			// Stalled: the last completed cycle was at time 0.
			stalled = append(stalled, inputSeries{s, fmt.Sprintf("0x%d", minutes)})
		case strings.HasPrefix(s, "usage_sync_oldest_success_age_seconds"):
			// Two users keep failing, so the oldest success ages with the clock in both.
			running = append(running, inputSeries{s, fmt.Sprintf("%g+60x%d", age, minutes)})
			stalled = append(stalled, inputSeries{s, fmt.Sprintf("%g+60x%d", age, minutes)})
		default:
			running = append(running, inputSeries{s, fmt.Sprintf("%g+%gx%d", first[s], second[s]-first[s], minutes)})
			stalled = append(stalled, inputSeries{s, fmt.Sprintf("%gx%d", second[s], minutes)})
		}
	}
	up := inputSeries{`up{job="usage-sync",instance="10.0.0.7:9464"}`, fmt.Sprintf("1x%d", minutes)}
	running, stalled = append(running, up), append(stalled, up)

	// The rules aggregate away every label, so a firing alert carries only the rule's own.
	fires := func(name string) expAlert {
		return expAlert{ExpLabels: rules[name].Labels, ExpAnnotations: rules[name].Annotations}
	}
	expect := func(at string, firing map[string]expAlert) []alertTest {
		var out []alertTest
		for name := range rules {
			at := alertTest{EvalTime: at, Alertname: name, ExpAlerts: []expAlert{}}
			if a, ok := firing[name]; ok {
				at.ExpAlerts = []expAlert{a}
			}
			out = append(out, at)
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Alertname < out[j].Alertname })
		return out
	}
	groups := []testGroup{
		{
			Name: "the real run's failures, repeating", Interval: "1m", InputSeries: running,
			AlertRuleTest: expect("30m", map[string]expAlert{
				"UsageSyncUserErrorsRising":    fires("UsageSyncUserErrorsRising"),
				"UsageSyncShortfallGrowing":    fires("UsageSyncShortfallGrowing"),
				"UsageSyncUpstreamErrors":      fires("UsageSyncUpstreamErrors"),
				"UsageSyncUpstreamRateLimited": fires("UsageSyncUpstreamRateLimited"),
				"UsageSyncKeyChargingHalted":   fires("UsageSyncKeyChargingHalted"),
			}),
		},
		{
			Name: "cycles stop completing (the database is gone)", Interval: "1m", InputSeries: stalled,
			AlertRuleTest: append(expect("10m", nil), expect("90m", map[string]expAlert{
				"UsageSyncNoSuccessfulCycle":   fires("UsageSyncNoSuccessfulCycle"),
				"UsageSyncOldestSuccessTooOld": fires("UsageSyncOldestSuccessTooOld"),
			})...),
		},
		{
			Name: "no worker answers", Interval: "1m",
			InputSeries: []inputSeries{{`up{job="usage-sync",instance="10.0.0.7:9464"}`, fmt.Sprintf("0x%d", minutes)}},
			AlertRuleTest: expect("10m", map[string]expAlert{
				"UsageSyncDown": fires("UsageSyncDown"),
			}),
		},
	}
	abs, err := filepath.Abs(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	file := map[string]any{"rule_files": []string{abs}, "evaluation_interval": "1m", "tests": groups}
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
		t.Fatalf("promtool test rules: %v\n%s\ninput:\n%s", err, out, b)
	}
}

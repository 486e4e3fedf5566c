package deploy

import (
	"context"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/usage-sync/usage-sync/internal/metrics"
)

// dbSource stands in for the database so the database-backed gauges are exposed.
type dbSource struct{}

func (dbSource) OldestSuccessAge(context.Context) (float64, bool, error) { return 1, true, nil }
func (dbSource) UsersEnrolled(context.Context) (float64, bool, error)    { return 4, true, nil }
func (dbSource) UsersInError(context.Context) (float64, bool, error)     { return 1, true, nil }
func (dbSource) PausedUsers(context.Context) (int64, error)              { return 0, nil }

// exposed is every metric name the binary serves (histogram series names included).
func exposed(t *testing.T) map[string]bool {
	t.Helper()
	m := metrics.New(dbSource{}, nil)
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
		if mf.GetType() == dto.MetricType_HISTOGRAM {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[mf.GetName()+s] = true
			}
		}
	}
	return names
}

var metricName = regexp.MustCompile(`\b(usage_sync_[a-z0-9_]+|go_[a-z0-9_]+|process_[a-z0-9_]+)\b`)

// The dashboard and the alert rules query only metrics the binary serves, so neither can go
// blank or silent after a rename.
func TestDashboardAndRulesUseServedMetrics(t *testing.T) {
	served := exposed(t)
	raw, err := os.ReadFile("prometheus/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	if err := dec.Decode(&dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	if len(dash.Panels) == 0 {
		t.Fatal("the dashboard has no panels")
	}
	var exprs []string
	since := ""
	for _, p := range dash.Panels {
		if p.Title == "Since the last full cycle" && len(p.Targets) > 0 {
			since = p.Targets[0].Expr
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q queries nothing", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	rules := loadRules(t)
	for _, r := range rules {
		exprs = append(exprs, r.Expr)
	}
	// The panel shows what the alert pages on: the process start while no cycle has completed,
	// never time() - 0 (56 years after every restart).
	if since == "" || !strings.Contains(rules["UsageSyncNoSuccessfulCycle"].Expr, since) || !strings.Contains(since, "process_start_time_seconds") {
		t.Errorf("panel \"Since the last full cycle\" queries %q, not UsageSyncNoSuccessfulCycle's %q", since, rules["UsageSyncNoSuccessfulCycle"].Expr)
	}
	used := map[string]bool{}
	for _, e := range exprs {
		names := metricName.FindAllString(e, -1)
		if len(names) == 0 && !strings.Contains(e, "up{") {
			t.Errorf("expression names no metric of the worker: %s", e)
		}
		for _, n := range names {
			used[n] = true
			if !served[n] {
				t.Errorf("%q is not served by the binary (in %s)", n, e)
			}
		}
	}
	// Every contract metric shows somewhere.
	for _, n := range []string{"usage_sync_cycles_total", "usage_sync_cycle_duration_seconds_bucket", "usage_sync_user_syncs_total",
		"usage_sync_upstream_requests_total", "usage_sync_upstream_retries_total", "usage_sync_ledger_rows_total",
		"usage_sync_credits_charged_total", "usage_sync_credits_debited_total", "usage_sync_credits_shortfall_total",
		"usage_sync_last_cycle_success_timestamp_seconds", "usage_sync_oldest_success_age_seconds",
		"usage_sync_database_up", "usage_sync_users_in_error", "usage_sync_users_enrolled"} {
		if !served[n] {
			t.Errorf("the binary does not serve %s", n)
		}
		if !used[n] {
			t.Errorf("neither the dashboard nor the alerts show %s", n)
		}
	}
}

package syncer

import (
	"strings"
	"testing"
	"time"

	"github.com/usage-sync/usage-sync/internal/store"
	"github.com/usage-sync/usage-sync/internal/upstream"
)

func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func tp(s string) *time.Time { t := ts(s); return &t }
func n(v int64) *int64       { return &v }

func TestPassDays(t *testing.T) {
	t.Parallel()
	now := ts("2026-11-27T10:00:00Z")
	cases := []struct {
		name       string
		chargeFrom time.Time
		settled    *time.Time
		max        int
		want       []string
	}{
		{"enrolled today", ts("2026-11-27T09:00:00Z"), nil, 7, []string{"2026-11-27"}},
		{"charge from mid-day two days ago", ts("2026-11-25T13:14:15.123456789Z"), nil, 7, []string{"2026-11-25", "2026-11-26", "2026-11-27"}},
		{"settled through yesterday", ts("2026-11-20T00:00:00Z"), tp("2026-11-26T00:00:00Z"), 7, []string{"2026-11-26", "2026-11-27"}},
		{"long outage: oldest days first, then today", ts("2026-10-01T00:00:00Z"), nil, 2, []string{"2026-10-01", "2026-10-02", "2026-11-27"}},
		{"backlog resumes where it was settled", ts("2026-10-01T00:00:00Z"), tp("2026-11-24T00:00:00Z"), 2, []string{"2026-11-24", "2026-11-25", "2026-11-27"}},
		{"backlog of exactly the cap", ts("2026-10-01T00:00:00Z"), tp("2026-11-25T00:00:00Z"), 2, []string{"2026-11-25", "2026-11-26", "2026-11-27"}},
		{"charge from in the future", ts("2026-11-28T00:00:00Z"), nil, 7, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var got []string
			for _, d := range passDays(now, c.chargeFrom, c.settled, c.max) {
				got = append(got, d.Format(time.DateOnly))
			}
			if strings.Join(got, ",") != strings.Join(c.want, ",") {
				t.Fatalf("passDays = %v, want %v", got, c.want)
			}
		})
	}
}

func key(id string, total int64, lastUsed string) upstream.Key {
	k := upstream.Key{ID: id, Purpose: "zapier", TotalRequests: n(total)}
	if lastUsed != "" {
		k.LastUsedAt = tp(lastUsed)
	}
	return k
}

func charges(plan *store.Plan, fam store.Family) map[string]int64 {
	out := map[string]int64{}
	for _, c := range plan.Charges {
		if c.Family == fam {
			out[c.Subject] = c.Total
		}
	}
	return out
}

func TestBuildPlanKeyWindows(t *testing.T) {
	t.Parallel()
	d1, d2 := ts("2026-11-26T00:00:00Z"), ts("2026-11-27T00:00:00Z")
	partial := upstream.KeyList{Keys: []upstream.Key{key("a", 4, "2026-11-27T09:00:00Z")}}
	in := planInput{
		userID: "u", now: ts("2026-11-27T10:00:00Z"), chargeFrom: ts("2026-11-26T12:00:00.5Z"), settleLag: 2 * time.Hour,
		windows: []window{
			{day: d1, keys: upstream.KeyList{Keys: []upstream.Key{key("a", 10, "2026-11-27T09:00:00Z")}}, partial: &partial},
			{day: d2, keys: upstream.KeyList{Keys: []upstream.Key{key("a", 3, "2026-11-27T09:00:00Z")}}},
		},
		lifetime: upstream.KeyList{Keys: []upstream.Key{
			key("a", 20, "2026-11-27T09:00:00Z"),
			key("idle", 7, "2026-11-20T00:00:00Z"), // unused since before both days: its rows become 0
			key("busy", 9, "2026-11-27T09:30:00Z"), // absent from the windows but used today: absence says nothing
		}},
		settledTotals: map[string]int64{"a": 5},
	}
	plan := buildPlan(in)
	if got := charges(plan, store.FamilyKey); len(got) != 2 || got["a/2026-11-26"] != 4 || got["a/2026-11-27"] != 3 {
		t.Fatalf("key charges = %v; want the CHARGE_FROM day charged from CHARGE_FROM (4) and the next day in full (3)", got)
	}
	if len(plan.Usage) != 2 || plan.Usage[0].Count != 10 {
		t.Fatalf("usage rows = %+v; want the full day (10) mirrored for the CHARGE_FROM day", plan.Usage)
	}
	zero := map[string]int{}
	for _, z := range plan.ZeroUsage {
		zero[z.KeyID]++
	}
	if zero["idle"] != 2 || zero["busy"] != 0 || zero["a"] != 0 {
		t.Fatalf("zeroed rows = %v; want idle on both days only", zero)
	}
	if len(plan.BlockedKeys) != 0 {
		t.Fatalf("consistent data blocked keys: %v", plan.BlockedKeys)
	}
	if plan.SettledThrough == nil || !plan.SettledThrough.Equal(d2) {
		t.Fatalf("settled through %v; want %v (yesterday ended more than the lag ago, today has not)", plan.SettledThrough, d2)
	}
}

func TestBuildPlanGuardBlocksInconsistentKeys(t *testing.T) {
	t.Parallel()
	d := ts("2026-11-27T00:00:00Z")
	cases := []struct {
		name    string
		window  int64
		life    int64
		settled int64
		reason  string
	}{
		{"window above lifetime", 30, 20, 0, "more than the key's lifetime total"},
		{"days add up above lifetime", 15, 20, 10, "add up to 25"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			plan := buildPlan(planInput{
				userID: "u", now: ts("2026-11-27T10:00:00Z"), chargeFrom: d,
				windows:       []window{{day: d, keys: upstream.KeyList{Keys: []upstream.Key{key("a", c.window, "2026-11-27T09:00:00Z")}}}},
				lifetime:      upstream.KeyList{Keys: []upstream.Key{key("a", c.life, "2026-11-27T09:00:00Z")}},
				settledTotals: map[string]int64{"a": c.settled},
			})
			if !strings.Contains(plan.BlockedKeys["a"], c.reason) {
				t.Fatalf("blocked = %v; want key a blocked with %q", plan.BlockedKeys, c.reason)
			}
			if len(charges(plan, store.FamilyKey)) != 0 {
				t.Fatalf("a blocked key was charged: %v", plan.Charges)
			}
			if len(plan.Usage) != 1 {
				t.Fatalf("the usage row of a blocked key must still be mirrored, got %v", plan.Usage)
			}
		})
	}
}

func TestBuildPlanTasks(t *testing.T) {
	t.Parallel()
	cf := ts("2026-11-27T08:00:00Z")
	done := func(id, created string, results map[string]int64) upstream.Task {
		return upstream.Task{ID: id, CreatedAt: tp(created), Metrics: upstream.TaskMetrics{
			TotalEmailAddresses: n(5), Progress: func() *float64 { f := 1.0; return &f }(), VerificationStatus: results}}
	}
	plan := buildPlan(planInput{userID: "u", now: ts("2026-11-27T10:00:00Z"), chargeFrom: cf, tasks: []upstream.Task{
		done("before", "2026-11-27T07:59:59Z", map[string]int64{"valid": 5}),
		done("new-vocab", "2026-11-27T08:00:00Z", map[string]int64{"valid": 2, "invalid": 1, "disposable_domain": 1, "unknown": 1, "role_based": 3, "disposable_domain_emails": 1}),
		done("old-vocab", "2026-11-27T09:00:00Z", map[string]int64{"exists": 1, "not_exists": 2, "catchall": 1, "weird": 1}),
		{ID: "running", CreatedAt: tp("2026-11-27T09:30:00Z"), Metrics: upstream.TaskMetrics{TotalEmailAddresses: n(5), JobStatus: map[string]int64{"completed": 2, "processing": 1}}},
	}})
	if got := charges(plan, store.FamilyTask); len(got) != 2 || got["new-vocab"] != 5 || got["old-vocab"] != 5 {
		t.Fatalf("task charges = %v; want the two finished tasks created at or after CHARGE_FROM, 5 each", got)
	}
	rows := map[string]store.TaskRow{}
	for _, r := range plan.Tasks {
		rows[r.ID] = r
	}
	if r := rows["new-vocab"]; r.Valid != 2 || r.Invalid != 2 || r.Unknown != 1 || r.Status != "completed" {
		t.Fatalf("new vocabulary mapped to %+v", r)
	}
	if r := rows["old-vocab"]; r.Valid != 1 || r.Invalid != 2 || r.Catchall != 1 || r.Unknown != 1 {
		t.Fatalf("old vocabulary mapped to %+v", r)
	}
	if r := rows["running"]; r.Status != "processing" || r.Finished {
		t.Fatalf("running task is %+v", r)
	}
}

func TestBuildPlanSettlesOnlyAContiguousPrefix(t *testing.T) {
	t.Parallel()
	now := ts("2026-11-27T10:00:00Z")
	win := func(days ...string) []window {
		var out []window
		for _, d := range days {
			out = append(out, window{day: ts(d + "T00:00:00Z")})
		}
		return out
	}
	cases := []struct {
		name    string
		settled *time.Time
		windows []window
		want    *time.Time
	}{
		{"a backlog pass settles its oldest days, not the gap before today", nil,
			win("2026-10-01", "2026-10-02", "2026-11-27"), tp("2026-10-03T00:00:00Z")},
		{"resuming from the mark", tp("2026-10-03T00:00:00Z"),
			win("2026-10-03", "2026-10-04", "2026-11-27"), tp("2026-10-05T00:00:00Z")},
		{"windows that do not start at the mark settle nothing", tp("2026-10-03T00:00:00Z"),
			win("2026-10-04", "2026-10-05", "2026-11-27"), tp("2026-10-03T00:00:00Z")},
		{"a hole in the windows stops the mark", tp("2026-10-03T00:00:00Z"),
			win("2026-10-03", "2026-10-05", "2026-11-27"), tp("2026-10-04T00:00:00Z")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			plan := buildPlan(planInput{userID: "u", now: now, chargeFrom: ts("2026-10-01T00:00:00Z"), settleLag: 2 * time.Hour,
				settled: c.settled, windows: c.windows})
			if plan.SettledThrough == nil || !plan.SettledThrough.Equal(*c.want) {
				t.Fatalf("settled through %v, want %v", plan.SettledThrough, c.want)
			}
		})
	}
}

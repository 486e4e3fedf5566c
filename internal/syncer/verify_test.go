package syncer

import (
	"testing"

	"github.com/usage-sync/usage-sync/internal/store"
	"github.com/usage-sync/usage-sync/internal/upstream"
)

func TestCompareMirrorKeepsOnlyWhatSettledDataCannotExplain(t *testing.T) {
	n := func(v int64) *int64 { return &v }
	used, later := tp("2026-11-09T10:00:00Z"), tp("2026-11-10T10:00:00Z")
	stored := store.Stored{
		Keys: []store.RecordKey{
			{ID: "lags", TotalRequests: n(10), LastUsedAt: used},                                           // used since the last sync: explained
			{ID: "same", TotalRequests: n(10), LastUsedAt: used},                                           // equal: nothing
			{ID: "stale", TotalRequests: n(9), LastUsedAt: used},                                           // not used since, yet lower
			{ID: "ahead", TotalRequests: n(12), LastUsedAt: used},                                          // above the upstream: never explained
			{ID: "gone", TotalRequests: n(3), LastUsedAt: used},                                            // active here, not listed there
			{ID: "old", TotalRequests: n(3), LastUsedAt: used, Revoked: true},                              // revoked here and there
			{ID: "edited", TotalRequests: n(5), LastUsedAt: used, MirrorDiffers: true, MirrorTotal: n(50)}, // the dashboard's copy changed
		},
		Purposes:         map[string]int64{"zapier": 20},
		MirrorPurposes:   map[string]int64{"zapier": 20, "planted": 9},
		KeyDaysDiffering: 2,
		Charged:          map[string]int64{"zapier": 20, "n8n": 4},
	}
	lifetime := upstream.KeyList{Keys: []upstream.Key{
		{ID: "lags", TotalRequests: n(14), LastUsedAt: later},
		{ID: "same", TotalRequests: n(10), LastUsedAt: used},
		{ID: "stale", TotalRequests: n(10), LastUsedAt: used},
		{ID: "ahead", TotalRequests: n(10), LastUsedAt: used},
		{ID: "edited", TotalRequests: n(5), LastUsedAt: used},
		{ID: "new", TotalRequests: n(1), LastUsedAt: later},
		{ID: "unknown"},
	}}
	days := upstream.UsageMetrics{RequestsByPurpose: map[string]int64{"zapier": 27, "n8n": 3}}
	got := compareMirror(verifyInput{user: "u", status: "ok", lifetime: lifetime, stored: stored, settled: true,
		from: ts("2026-11-08T00:00:00Z"), to: ts("2026-11-10T00:00:00Z"), days: days, charged: days})
	want := map[string]Difference{
		DiffKeyTotal + " stale":                          {Upstream: 10, Ours: 9},
		DiffKeyTotal + " ahead":                          {Upstream: 10, Ours: 12},
		DiffKeyMissing + " new":                          {Upstream: 1},
		DiffKeyNotListed + " gone":                       {Ours: 3},
		DiffMirrorAltered + " api_keys edited":           {Upstream: 5, Ours: 50},
		DiffMirrorAltered + " api_usage per-key rows":    {Rows: 2},
		DiffMirrorAltered + " api_usage purpose planted": {Ours: 9},
		DiffSettledUsage + " purpose n8n":                {Upstream: 3},
		DiffSettledUsage + " purpose zapier":             {Upstream: 27, Ours: 20},
		DiffUndercharged + " purpose zapier":             {Upstream: 27, Ours: 20},
		DiffOvercharged + " purpose n8n":                 {Upstream: 3, Ours: 4},
	}
	if len(got) != len(want) {
		t.Errorf("%d differences, want %d: %+v", len(got), len(want), got)
	}
	for _, d := range got {
		w, ok := want[d.Kind+" "+d.Subject]
		if !ok || w.Upstream != d.Upstream || w.Ours != d.Ours || w.Rows != d.Rows || d.Fix == "" {
			t.Errorf("unexpected %+v", d)
		}
	}
	for _, d := range got {
		if d.Kind == DiffUndercharged && d.Fix != "usage-sync resync --user u --from 2026-11-08 --to 2026-11-09" {
			t.Errorf("undercharged fix %q", d.Fix)
		}
	}
}

package simulator_test

import (
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/usage-sync/usage-sync/internal/simulator"
)

// A series lists like any user's tasks: newest first, created_after and created_before
// exclusive, count over the whole match, paged by offset; other users and endpoints are the
// simulator's own, and every request counts in Hits.
func TestSeriesListsLikeTheSimulator(t *testing.T) {
	t.Parallel()
	clk := newClock(t0)
	sim := simulator.New(simulator.Config{Users: 1, KeysPerUser: 1, TasksPerUser: 2, AdminToken: adminToken, Now: clk.Now})
	plain := sim.Users()[0]
	const heavy = "11111111-1111-4111-8111-111111111111"
	x := simulator.NewSeries(sim)
	newest := t0.Add(-time.Hour)
	x.Add(heavy, simulator.TaskSeries{N: 250, Newest: newest, Step: time.Second, Emails: 7})
	// Tasks created after the clock stay invisible, as in the simulator.
	x.Add("22222222-2222-4222-8222-222222222222", simulator.TaskSeries{N: 6, Newest: t0.Add(30 * time.Minute), Step: 10 * time.Minute})
	srv := httptest.NewServer(x.Handler())
	t.Cleanup(srv.Close)

	type page struct {
		Count int `json:"count"`
		Tasks []struct {
			ID        string `json:"id"`
			CreatedAt string `json:"created_at"`
			Metrics   struct {
				Progress  float64          `json:"progress"`
				JobStatus map[string]int64 `json:"job_status"`
			} `json:"metrics"`
		} `json:"tasks"`
	}
	// (newest − 200 s, newest]: 200 tasks, the oldest one excluded by the exclusive bound.
	after := newest.Add(-200 * time.Second)
	var seen []time.Time
	ids := map[string]bool{}
	for off := 0; ; off += 100 {
		var p page
		adminJSON(t, srv, heavy, "/tasks", url.Values{"limit": {"100"}, "offset": {strconv.Itoa(off)},
			"created_after": {after.Format(time.RFC3339Nano)}, "created_before": {t0.Format(time.RFC3339Nano)}}, &p)
		if p.Count != 200 {
			t.Fatalf("count %d, want 200", p.Count)
		}
		for _, tk := range p.Tasks {
			c, err := time.Parse(time.RFC3339Nano, tk.CreatedAt)
			if err != nil {
				t.Fatal(err)
			}
			if tk.Metrics.Progress != 1 || tk.Metrics.JobStatus["completed"] != 7 {
				t.Fatalf("task %s: progress %v, job_status %v; want finished with 7 results", tk.ID, tk.Metrics.Progress, tk.Metrics.JobStatus)
			}
			seen = append(seen, c)
			ids[tk.ID] = true
		}
		if len(p.Tasks) < 100 {
			break
		}
	}
	if len(seen) != 200 || len(ids) != 200 {
		t.Fatalf("paged %d tasks (%d distinct ids), want 200", len(seen), len(ids))
	}
	if !seen[0].Equal(newest) || !seen[199].Equal(newest.Add(-199*time.Second)) {
		t.Fatalf("first %v, last %v: want newest first from %v", seen[0], seen[199], newest)
	}
	for i := 1; i < len(seen); i++ {
		if !seen[i].Before(seen[i-1]) {
			t.Fatalf("task %d at %v is not older than the one before", i, seen[i])
		}
	}

	var future page
	adminJSON(t, srv, "22222222-2222-4222-8222-222222222222", "/tasks", nil, &future)
	if future.Count != 3 || len(future.Tasks) != 3 {
		t.Fatalf("series reaching past the clock: count %d, %d tasks; want the 3 created by now", future.Count, len(future.Tasks))
	}

	var p page
	adminJSON(t, srv, plain, "/tasks", nil, &p)
	if p.Count != 2 {
		t.Fatalf("a user without a series lists %d tasks, want its 2", p.Count)
	}
	var keys struct {
		Count int `json:"count"`
	}
	adminJSON(t, srv, plain, "/api-keys", nil, &keys)
	if keys.Count != 1 {
		t.Fatalf("keys through the series handler: %d, want 1", keys.Count)
	}
	if h := sim.Hits("/tasks"); h != 5 {
		t.Fatalf("Hits(/tasks) = %d, want the 5 listings", h)
	}
	if r := admin(t, srv, heavy, "/tasks", url.Values{"limit": {"101"}}); r.status != 400 {
		t.Fatalf("limit 101: status %d, want 400", r.status)
	}
}

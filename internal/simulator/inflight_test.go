package simulator_test

import (
	"net/url"
	"sync"
	"testing"

	"github.com/usage-sync/usage-sync/internal/simulator"
)

// The simulator counts requests in flight and records each one's interval in one sequence:
// three requests held until all three arrived overlap and make a peak of three; a fourth sent
// after them starts after each ended, so the four took two rounds. Nothing is recorded without
// Config.RecordRequests, but the count is kept.
func TestInFlightAndIntervals(t *testing.T) {
	t.Parallel()
	for _, record := range []bool{true, false} {
		sim, srv := start(t, simulator.Config{Seed: 9, Users: 1, RecordRequests: record})
		u := sim.Users()[0]
		var mu sync.Mutex
		arrived, all := 0, make(chan struct{})
		sim.OnRequest(func(string, string, url.Values) {
			mu.Lock()
			arrived++
			n := arrived
			mu.Unlock()
			switch {
			case n == 3:
				close(all)
			case n > 3:
				return
			}
			<-all
		})
		var wg sync.WaitGroup
		for _, path := range []string{"/api-keys", "/metrics/api-usage", "/tasks"} {
			wg.Go(func() { admin(t, srv, u, path, nil) })
		}
		wg.Wait()
		if now, peak := sim.InFlight(); now != 0 || peak != 3 {
			t.Fatalf("record=%v: in flight %d now, %d at most; want 0 and 3", record, now, peak)
		}
		admin(t, srv, u, "/api-keys", url.Values{"from": {"2026-01-01T00:00:00Z"}})
		reqs := sim.Requests(u)
		if !record {
			if len(reqs) != 0 {
				t.Fatalf("recorded %d requests without RecordRequests", len(reqs))
			}
			continue
		}
		if len(reqs) != 4 {
			t.Fatalf("recorded %d requests, want 4", len(reqs))
		}
		for i, r := range reqs[:3] {
			if r.Status != 200 || r.End == 0 {
				t.Fatalf("request %d: status %d end %d", i, r.Status, r.End)
			}
			for _, o := range reqs[:3] {
				if !r.Overlaps(o) {
					t.Fatalf("held requests %+v and %+v do not overlap", r, o)
				}
			}
			if !r.Before(reqs[3]) {
				t.Fatalf("the fourth request %+v does not start after %+v ended", reqs[3], r)
			}
		}
		if !reqs[3].Window() || reqs[3].Lifetime() || !reqs[0].Lifetime() && !reqs[1].Lifetime() && !reqs[2].Lifetime() {
			t.Fatal("Window and Lifetime misread the requests")
		}
		if n := simulator.Rounds(reqs); n != 2 {
			t.Fatalf("Rounds = %d, want 2", n)
		}
		sim.ResetRequests()
		if len(sim.Requests(u)) != 0 {
			t.Fatal("ResetRequests kept the log")
		}
		if _, peak := sim.InFlight(); peak != 0 {
			t.Fatalf("ResetRequests left the peak at %d", peak)
		}
	}
}

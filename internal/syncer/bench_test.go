package syncer_test

import (
	"context"
	"testing"

	"github.com/usage-sync/usage-sync/internal/simulator"
	"github.com/usage-sync/usage-sync/internal/syncer"
)

// BenchmarkCycle measures whole cycles over real HTTP and a real database: 50 users with 3 keys
// and 10 tasks each, three day windows, charging on. The first cycle writes everything; the
// later ones re-read and find nothing changed, which is the daemon's steady state.
func BenchmarkCycle(b *testing.B) {
	e := setup(b, envConfig{sim: simulator.Config{Seed: 99, Users: 50, KeysPerUser: 3, TasksPerUser: 10, HistoryDays: 3},
		opts: syncer.Options{Concurrency: 8}})
	s := e.syncer()
	first, err := s.RunCycle(context.Background(), syncer.CycleOptions{All: true})
	if err != nil || first.Synced != 50 {
		b.Fatalf("first cycle: %+v %v", first, err)
	}
	b.ResetTimer()
	users := 0
	for range b.N {
		sum, err := s.RunCycle(context.Background(), syncer.CycleOptions{All: true})
		if err != nil || !sum.OK() {
			b.Fatalf("cycle: %+v %v", sum, err)
		}
		users += sum.Synced
	}
	b.ReportMetric(float64(users)/b.Elapsed().Seconds(), "users/s_steady")
	b.ReportMetric(float64(first.Synced)/first.Duration.Seconds(), "users/s_first")
}

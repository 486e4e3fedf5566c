package metrics_test

import (
	"context"
	"testing"

	"github.com/usage-sync/usage-sync/internal/metrics"
	"github.com/usage-sync/usage-sync/internal/pgtest"
)

// BenchmarkScrape is one /metrics gather with 10,000 enrolled users, the database-backed gauges'
// reads at scrape time included: what a scrape costs the database and the process.
func BenchmarkScrape(b *testing.B) {
	st, dsn := pgtest.Open(b, pgtest.Plain)
	if _, err := pgtest.Pool(b, dsn).Exec(context.Background(), `
		with p as (insert into profiles (user_id) select gen_random_uuid() from generate_series(1, 10000) returning user_id)
		insert into sync_state (user_id, enrolled_at, last_success_at)
		select user_id, now() - interval '2 days', now() - random() * interval '1 hour' from p;
		analyze sync_state; analyze profiles`); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		m    *metrics.Metrics
	}{{"with-database-gauges", metrics.New(st, nil)}, {"collectors-only", metrics.New(nil, nil)}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := c.m.Registry().Gather(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

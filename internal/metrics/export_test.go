package metrics

import (
	"time"

	"github.com/usage-sync/usage-sync/internal/clock"
)

// SetClock replaces the clock the metrics read (the last-cycle gauge, the held database gauges).
func (m *Metrics) SetClock(c clock.Clock) { m.clock = c }

// SetScrapeQueryTimeout replaces the bound on a scrape's database reads.
func (m *Metrics) SetScrapeQueryTimeout(d time.Duration) { m.db.timeout = d }

package metrics

import "time"

// SetNow replaces the clock the metrics read (the last-cycle gauge, the held database gauges).
func (m *Metrics) SetNow(now func() time.Time) { m.now = now }

// SetScrapeQueryTimeout replaces the bound on a scrape's database reads.
func (m *Metrics) SetScrapeQueryTimeout(d time.Duration) { m.db.timeout = d }

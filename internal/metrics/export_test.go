package metrics

import "time"

// SetNow replaces the clock the metrics read (the last-cycle gauge, the held database gauges).
func (m *Metrics) SetNow(now func() time.Time) { m.now = now }

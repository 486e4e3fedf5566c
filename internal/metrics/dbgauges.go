package metrics

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/usage-sync/usage-sync/internal/clock"
)

// The gauges read from the database at scrape time, so they keep moving while no cycle runs,
// which is exactly when they must be alerted on. Each is one entry of dbGauges: a gauge added
// beside them is one line there, one description below and one method of Source.
var (
	oldestAgeDesc = prometheus.NewDesc("usage_sync_oldest_success_age_seconds",
		"Seconds since the least recently synced user of profiles last synced successfully (since its enrolment if it never did), read from the database at scrape time; while the database does not answer, the last reading plus the time since. Absent before the first reading and while no user is enrolled.",
		nil, nil)
	usersEnrolledDesc = prometheus.NewDesc("usage_sync_users_enrolled",
		"Users of profiles the worker has enrolled and syncs (paused users left out), read from the database at scrape time (the last reading while the database does not answer).",
		nil, nil)
	usersInErrorDesc = prometheus.NewDesc("usage_sync_users_in_error",
		"Users of profiles whose last sync failed (sync_state.status = 'error'), read from the database at scrape time (the last reading while the database does not answer).",
		nil, nil)
	usersPausedDesc = prometheus.NewDesc("usage_sync_users_paused",
		"Users of profiles whose sync an operator paused (usage-sync pause): not synced, not charged, and left out of usage_sync_oldest_success_age_seconds and usage_sync_users_enrolled; read from the database at scrape time (the last reading while it does not answer).",
		nil, nil)
	databaseUpDesc = prometheus.NewDesc("usage_sync_database_up",
		"1 when this scrape read the database-backed gauges, 0 when the database did not answer within the scrape's bound: the worker cannot read its database.",
		nil, nil)
)

// dbGauges lists the scrape-time gauges and what each reads.
func dbGauges(src Source) []*dbGauge {
	return []*dbGauge{
		{desc: oldestAgeDesc, read: src.OldestSuccessAge, ages: true},
		{desc: usersEnrolledDesc, read: src.UsersEnrolled},
		{desc: usersInErrorDesc, read: src.UsersInError},
		{desc: usersPausedDesc, read: func(ctx context.Context) (float64, bool, error) {
			n, err := src.PausedUsers(ctx)
			return float64(n), err == nil, err
		}},
	}
}

// dbGauge is one scrape-time gauge and its last reading.
type dbGauge struct {
	desc *prometheus.Desc
	read func(context.Context) (float64, bool, error)
	// ages: while the database does not answer, the gauge is its last reading plus the time
	// since (an age goes on growing); otherwise it stays at its last reading.
	ages bool

	have   bool // a reading was taken (ok) and not superseded by "no value"
	last   float64
	lastAt time.Time
}

// held is what the gauge reports at now when its read failed.
func (g *dbGauge) held(now time.Time) float64 {
	if g.ages {
		return g.last + now.Sub(g.lastAt).Seconds()
	}
	return g.last
}

// dbCollector reads every dbGauge in one scrape under one deadline, and says whether the database
// answered (usage_sync_database_up). A gauge never vanishes because the database did not answer.
// One read at a time: a scrape that comes while another's read is in flight reports the held
// values at once instead of queueing behind it, so no scrape waits on the database for longer
// than the bound, however many scrape at once.
type dbCollector struct {
	log     *zap.Logger
	timeout time.Duration
	clock   clock.Clock

	mu      sync.Mutex // guards the fields below and the gauges' readings
	gauges  []*dbGauge
	reading bool    // a scrape's read is in flight
	up      float64 // usage_sync_database_up of the last read
}

func newDBCollector(src Source, log *zap.Logger, timeout time.Duration, clk clock.Clock) *dbCollector {
	return &dbCollector{log: log, timeout: timeout, clock: clk, gauges: dbGauges(src)}
}

func (c *dbCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- databaseUpDesc
	for _, g := range c.gauges {
		ch <- g.desc
	}
}

// reading is one gauge's outcome in a read.
type reading struct {
	v       float64
	ok, err bool
}

func (c *dbCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	if c.reading {
		c.emit(ch, nil)
		c.mu.Unlock()
		return
	}
	c.reading = true
	c.mu.Unlock()

	got := c.read()

	c.mu.Lock()
	defer c.mu.Unlock()
	c.reading = false
	c.emit(ch, got)
}

// read runs every gauge's query under one deadline; after the first failure the rest are not
// tried (the database did not answer) and count as failed too.
func (c *dbCollector) read() []reading {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	out := make([]reading, len(c.gauges))
	var failed error
	for i, g := range c.gauges {
		if failed != nil {
			out[i].err = true
			continue
		}
		v, ok, err := g.read(ctx)
		if err != nil {
			// The scrape goes on: a scrape failing as a whole would hide every other metric,
			// and usage_sync_database_up says what happened.
			failed = err
			out[i].err = true
			continue
		}
		out[i] = reading{v: v, ok: ok}
	}
	if failed != nil {
		c.log.Debug("metrics.database_read_failed", zap.Error(failed))
	}
	return out
}

// emit records got (nil: no read, the held values) and sends every gauge. c.mu is held.
func (c *dbCollector) emit(ch chan<- prometheus.Metric, got []reading) {
	now := c.clock.Now()
	if got != nil {
		c.up = 1
	}
	for i, g := range c.gauges {
		switch {
		case got == nil || got[i].err:
			if got != nil {
				c.up = 0
			}
			if g.have {
				ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, g.held(now))
			}
		case !got[i].ok:
			g.have = false
		default:
			g.have, g.last, g.lastAt = true, got[i].v, now
			ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, g.last)
		}
	}
	ch <- prometheus.MustNewConstMetric(databaseUpDesc, prometheus.GaugeValue, c.up)
}

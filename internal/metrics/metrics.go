// Package metrics holds the worker's Prometheus collectors, on a registry of each instance's own.
package metrics

import (
	"context"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

	"github.com/usage-sync/usage-sync/internal/store"
	"github.com/usage-sync/usage-sync/internal/syncer"
)

// AgeQueryTimeoutDefault bounds the query behind usage_sync_oldest_success_age_seconds at scrape
// time, so a slow database delays a scrape by at most this much.
const AgeQueryTimeoutDefault = 5 * time.Second

// AgeSource is what the oldest-success gauge reads at scrape time; *store.Store implements it.
type AgeSource interface {
	OldestSuccessAge(ctx context.Context) (seconds float64, ok bool, err error)
}

// Metrics is one process's collectors. It observes the syncer (syncer.Observer) and the upstream
// client (upstream.Observer). No label carries a user id or a secret: labels are outcomes,
// statuses, endpoint families, HTTP codes and ledger sources.
type Metrics struct {
	reg *prometheus.Registry
	now func() time.Time

	cycles        *prometheus.CounterVec
	cycleDuration prometheus.Histogram
	userSyncs     *prometheus.CounterVec
	requests      *prometheus.CounterVec
	retries       *prometheus.CounterVec
	ledgerRows    *prometheus.CounterVec
	charged       prometheus.Counter
	debited       prometheus.Counter
	shortfall     prometheus.Counter
	lastSuccess   prometheus.Gauge
}

// Label values known in advance; their series exist from the start at 0, so rates and alerts
// see a zero rather than no data.
var (
	cycleOutcomes = []string{"ok", "partial", "aborted"}
	userStatuses  = []string{"ok", "degraded", "error", "skipped", "abandoned"}
	upstreamOps   = []string{"keys", "usage", "tasks"}
	ledgerSources = []string{"task", "task_adjust", "key_requests", "unlisted_requests"}
)

// New registers every collector, the Go and process collectors included, on a fresh registry.
// ages may be nil (no oldest-success gauge); log receives the gauge's query failures.
func New(ages AgeSource, log *zap.Logger) *Metrics {
	if log == nil {
		log = zap.NewNop()
	}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		now: time.Now,
		cycles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "usage_sync_cycles_total",
			Help: "Sync cycles finished, by outcome: ok (every user synced), partial (some user failed or was abandoned), aborted (the cycle could not run to its end).",
		}, []string{"outcome"}),
		cycleDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "usage_sync_cycle_duration_seconds",
			Help:    "Duration of sync cycles, every trigger included.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 15), // 50 ms .. ~14 min
		}),
		userSyncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "usage_sync_user_syncs_total",
			Help: "Users' syncs, by outcome: ok, degraded (a key's charging halted by the guard), error, skipped (leased by another worker), abandoned (shutdown or lease lost).",
		}, []string{"status"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "usage_sync_upstream_requests_total",
			Help: "HTTP attempts against the upstream API, by endpoint family (keys, usage, tasks) and HTTP status, or error when no response came back.",
		}, []string{"op", "code"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "usage_sync_upstream_retries_total",
			Help: "Upstream attempts that failed and were retried, by endpoint family.",
		}, []string{"op"}),
		ledgerRows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "usage_sync_ledger_rows_total",
			Help: "credit_ledger rows this process posted, by source (shadow-mode rows under shadow:<source>).",
		}, []string{"source"}),
		charged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "usage_sync_credits_charged_total",
			Help: "Credits charged by the ledger rows this process posted (shadow rows excluded).",
		}),
		debited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "usage_sync_credits_debited_total",
			Help: "Credits taken off user_credits by the ledger rows this process posted (shadow rows excluded).",
		}),
		shortfall: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "usage_sync_credits_shortfall_total",
			Help: "Credits charged but not covered by the user's balance (charged - debited; shadow rows excluded).",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "usage_sync_last_cycle_success_timestamp_seconds",
			Help: "Unix time the last full cycle (scheduled or --once, not a single user's) ran to its end; 0 before the first.",
		}),
	}
	for _, o := range cycleOutcomes {
		m.cycles.WithLabelValues(o)
	}
	for _, s := range userStatuses {
		m.userSyncs.WithLabelValues(s)
	}
	for _, op := range upstreamOps {
		m.retries.WithLabelValues(op)
	}
	for _, s := range ledgerSources {
		m.ledgerRows.WithLabelValues(s)
		m.ledgerRows.WithLabelValues(store.ShadowPrefix + s)
	}
	m.reg.MustRegister(m.cycles, m.cycleDuration, m.userSyncs, m.requests, m.retries, m.ledgerRows,
		m.charged, m.debited, m.shortfall, m.lastSuccess,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if ages != nil {
		m.reg.MustRegister(&ageCollector{src: ages, log: log, timeout: AgeQueryTimeoutDefault})
	}
	// The store behind the age gauge counts the paused users too (usage_sync_users_paused).
	if p, ok := ages.(PausedSource); ok {
		m.reg.MustRegister(&pausedCollector{src: p, log: log, timeout: AgeQueryTimeoutDefault})
	}
	return m
}

// Registry is the registry to serve (promhttp.HandlerFor) or to inspect in tests.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// CycleDone implements syncer.Observer.
func (m *Metrics) CycleDone(o syncer.CycleOptions, sum syncer.Summary, took time.Duration, err error) {
	outcome := "ok"
	switch {
	case err != nil:
		outcome = "aborted"
	case !sum.OK():
		outcome = "partial"
	}
	m.cycles.WithLabelValues(outcome).Inc()
	m.cycleDuration.Observe(took.Seconds())
	add := func(status string, n int) {
		if n > 0 {
			m.userSyncs.WithLabelValues(status).Add(float64(n))
		}
	}
	add("ok", sum.Synced-sum.Degraded)
	add("degraded", sum.Degraded)
	add("error", sum.Failed)
	add("skipped", sum.Skipped)
	add("abandoned", sum.Abandoned)
	// A single user's cycle (webhook, request_sync, --user) says nothing about whether the
	// schedule runs, which is what this gauge is for.
	if err == nil && o.UserID == "" {
		m.lastSuccess.Set(float64(m.now().UnixNano()) / 1e9)
	}
}

// Charged implements syncer.Observer: the rows one user's sync posted, counted as they were
// committed, so the totals equal the ledger's for what this process wrote without a scan.
func (m *Metrics) Charged(r store.ChargeResult) {
	var charged, debited int64
	for _, p := range r.Posted {
		m.ledgerRows.WithLabelValues(p.Source).Inc()
		if strings.HasPrefix(p.Source, store.ShadowPrefix) {
			continue
		}
		charged += p.Amount
		debited += p.Debited
	}
	m.charged.Add(float64(charged))
	m.debited.Add(float64(debited))
	m.shortfall.Add(float64(charged - debited))
}

// Request implements upstream.Observer.
func (m *Metrics) Request(op, code string) { m.requests.WithLabelValues(op, code).Inc() }

// Retry implements upstream.Observer.
func (m *Metrics) Retry(op string) { m.retries.WithLabelValues(op).Inc() }

// ageCollector reads usage_sync_oldest_success_age_seconds from the database at scrape time, so
// the number keeps growing while no cycle runs, which is exactly when it must be alerted on.
type ageCollector struct {
	src     AgeSource
	log     *zap.Logger
	timeout time.Duration
}

var ageDesc = prometheus.NewDesc("usage_sync_oldest_success_age_seconds",
	"Seconds since the least recently synced user of profiles last synced successfully (since its enrolment if it never did), read from the database at scrape time; absent while the database does not answer or no user is enrolled.",
	nil, nil)

func (c *ageCollector) Describe(ch chan<- *prometheus.Desc) { ch <- ageDesc }

func (c *ageCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	age, ok, err := c.src.OldestSuccessAge(ctx)
	if err != nil {
		// The scrape goes on without the gauge: /readyz reports the database, and a scrape
		// failing as a whole would hide every other metric.
		c.log.Debug("metrics.oldest_success_age_failed", zap.Error(err))
		return
	}
	if ok {
		ch <- prometheus.MustNewConstMetric(ageDesc, prometheus.GaugeValue, age)
	}
}

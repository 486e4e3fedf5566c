// Package metrics holds the worker's Prometheus collectors, on a registry of each instance's own.
package metrics

import (
	"context"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

	"github.com/usage-sync/usage-sync/internal/clock"
	"github.com/usage-sync/usage-sync/internal/store"
	"github.com/usage-sync/usage-sync/internal/syncer"
)

// ScrapeQueryTimeoutDefault bounds the database reads of one scrape, all of them together, so a
// slow or hung database delays a scrape by at most this much (Prometheus's scrape_timeout
// defaults to 10 s; docs/operations.md).
const ScrapeQueryTimeoutDefault = time.Second

// Source is what the gauges read from the database at scrape time (dbgauges.go);
// *store.Store implements it. Each read returns ok false when it has no value (no user enrolled).
type Source interface {
	OldestSuccessAge(ctx context.Context) (seconds float64, ok bool, err error)
	UsersEnrolled(ctx context.Context) (n float64, ok bool, err error)
	UsersInError(ctx context.Context) (n float64, ok bool, err error)
	PausedUsers(ctx context.Context) (int64, error)
}

// Metrics is one process's collectors. It observes the syncer (syncer.Observer) and the upstream
// client (upstream.Observer). No label carries a user id or a secret: labels are outcomes,
// statuses, endpoint families, HTTP codes and ledger sources.
type Metrics struct {
	reg   *prometheus.Registry
	clock clock.Clock // the host's; tests stand it still (export_test.go)

	cycles        *prometheus.CounterVec
	cycleDuration prometheus.Histogram
	userSyncs     *prometheus.CounterVec
	requests      *prometheus.CounterVec
	retries       *prometheus.CounterVec
	inFlight      prometheus.Gauge
	rateWait      prometheus.Histogram
	ledgerRows    *prometheus.CounterVec
	charged       prometheus.Counter
	debited       prometheus.Counter
	shortfall     prometheus.Counter
	lastSuccess   prometheus.Gauge
	db            *dbCollector // nil without a Source
}

// Label values known in advance; their series exist from the start at 0, so rates and alerts
// see a zero rather than no data.
var (
	cycleOutcomes = []string{"ok", "partial", "aborted"}
	userStatuses  = []string{"ok", "degraded", "error", "skipped", "abandoned"}
	upstreamOps   = []string{"keys", "usage", "tasks"}
	// upstreamCodes are the codes the alert rules name or divide by; other codes' series appear
	// on their first attempt (docs/operations.md, "A lost first increment").
	upstreamCodes = []string{"200", "401", "403", "429", "500", "error"}
)

// New registers every collector, the Go and process collectors included, on a fresh registry.
// db may be nil (no database-backed gauges); log receives their query failures.
func New(db Source, log *zap.Logger) *Metrics {
	if log == nil {
		log = zap.NewNop()
	}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
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
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "usage_sync_upstream_requests_in_flight",
			Help: "Upstream HTTP attempts in flight now, retries included; at most UPSTREAM_MAX_INFLIGHT.",
		}),
		rateWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "usage_sync_upstream_rate_limit_wait_seconds",
			Help:    "Time each upstream attempt waited for UPSTREAM_RATE_LIMIT before it was sent; no observations when the limit is off.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9), // 1 ms .. ~65 s
		}),
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
		for _, code := range upstreamCodes {
			m.requests.WithLabelValues(op, code)
		}
	}
	for _, s := range store.LedgerSources() {
		m.ledgerRows.WithLabelValues(s)
		m.ledgerRows.WithLabelValues(store.ShadowPrefix + s)
	}
	m.reg.MustRegister(m.cycles, m.cycleDuration, m.userSyncs, m.requests, m.retries, m.inFlight, m.rateWait, m.ledgerRows,
		m.charged, m.debited, m.shortfall, m.lastSuccess,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if db != nil {
		m.db = newDBCollector(db, log, ScrapeQueryTimeoutDefault, func() time.Time { return m.clock.Now() })
		m.reg.MustRegister(m.db)
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
		m.lastSuccess.Set(float64(m.clock.Now().UnixNano()) / 1e9)
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

// InFlight implements upstream.Observer.
func (m *Metrics) InFlight(delta int) { m.inFlight.Add(float64(delta)) }

// RateLimitWait implements upstream.Observer.
func (m *Metrics) RateLimitWait(d time.Duration) { m.rateWait.Observe(d.Seconds()) }

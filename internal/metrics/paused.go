package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// PausedSource is what the paused-users gauge reads at scrape time; *store.Store implements it.
type PausedSource interface {
	PausedUsers(ctx context.Context) (int64, error)
}

// pausedCollector reads usage_sync_users_paused from the database at scrape time: pauses are
// made by another process (usage-sync pause), so only the database knows the number.
type pausedCollector struct {
	src     PausedSource
	log     *zap.Logger
	timeout time.Duration
}

var pausedDesc = prometheus.NewDesc("usage_sync_users_paused",
	"Users of profiles whose sync an operator paused (usage-sync pause): not synced, not charged, and left out of usage_sync_oldest_success_age_seconds; read from the database at scrape time, absent while it does not answer.",
	nil, nil)

func (c *pausedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- pausedDesc }

func (c *pausedCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	n, err := c.src.PausedUsers(ctx)
	if err != nil {
		// As for the age gauge: the rest of the scrape goes on.
		c.log.Debug("metrics.users_paused_failed", zap.Error(err))
		return
	}
	ch <- prometheus.MustNewConstMetric(pausedDesc, prometheus.GaugeValue, float64(n))
}

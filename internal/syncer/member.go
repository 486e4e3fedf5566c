package syncer

import (
	"context"

	"go.uber.org/zap"

	"github.com/usage-sync/usage-sync/internal/store"
)

// keepMember keeps the run live in its cycle (store.RenewMember every third of SYNC_LEASE_TTL,
// as leases are renewed) until the returned func is called, which stops the renewals and marks
// the run ended: from then on it holds the cycle open for nobody. A run killed outright stops
// renewing, and other runs see it dead once its last renewal is a TTL old (docs/design.md, "A cycle
// lives while a worker in it does").
func (s *Syncer) keepMember(ctx context.Context, log *zap.Logger, m store.CycleMember) (end func()) {
	// Renewal outlives shutdown: the run is in its cycle until its last user is given back.
	rctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick(rctx, s.opts.LeaseTTL/3, func() bool {
			if err := s.st.RenewMember(rctx, m); err != nil && rctx.Err() == nil {
				log.Warn("sync.cycle.renew_failed", zap.Error(err))
			}
			return true
		})
	}()
	return func() {
		stop()
		<-done
		if err := s.st.EndMember(context.WithoutCancel(ctx), m); err != nil {
			// Not fatal: the membership expires a TTL after its last renewal.
			log.Warn("sync.cycle.end_failed", zap.Error(err))
		}
	}
}

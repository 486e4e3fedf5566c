package syncer

import (
	"time"

	"github.com/usage-sync/usage-sync/internal/store"
)

// Observer is told what cycles and charges did, for metrics. Options.Observer is nil by default
// (nothing observes); its methods run on the cycle's goroutines and must not block.
type Observer interface {
	// CycleDone reports a finished cycle: its summary (the users' outcomes), how long it took,
	// and err when the cycle could not run to its end (the database went away).
	CycleDone(o CycleOptions, sum Summary, took time.Duration, err error)
	// Charged reports the ledger rows one user's sync posted (shadow rows carry the shadow:
	// source prefix).
	Charged(r store.ChargeResult)
}

// observeCharge hands a user's posted charges to the observer, if any.
func (s *Syncer) observeCharge(r store.ChargeResult) {
	if s.opts.Observer != nil {
		s.opts.Observer.Charged(r)
	}
}

package syncer

import "github.com/usage-sync/usage-sync/internal/clock"

// SetChunkPages makes a chunk transaction apply n task pages, so tests reach chunk boundaries
// with few tasks.
func (s *Syncer) SetChunkPages(n int) { s.chunkPages = n }

// SetClock puts the syncer on a test's clock, in Go and in SQL alike: the day windows, and every
// statement's @now (leases, attempts, backoff, cycles, enrolment, revision sweeps).
func (s *Syncer) SetClock(c clock.Clock) { s.clock = c }

// SetHooks installs test hooks.
func (s *Syncer) SetHooks(h *Hooks) { s.hooks = h }

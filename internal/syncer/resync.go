package syncer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"go.uber.org/zap"

	"github.com/usage-sync/usage-sync/internal/logging"
	"github.com/usage-sync/usage-sync/internal/store"
)

// ErrUserLeased means another live worker holds the user's lease: a resync waits for no one, so
// the operator runs it again once that sync has ended.
var ErrUserLeased = errors.New("the user is being synced by another worker")

// RangeError is a resync range that cannot be read as given; the message names the fix.
type RangeError struct{ Msg string }

func (e *RangeError) Error() string { return e.Msg }

// ResyncOptions say which user and which UTC days a resync re-reads.
type ResyncOptions struct {
	UserID string
	// From and To are UTC days, both included. nil From: the day the user's charging starts
	// (CHARGE_FROM, else its enrolment); nil To: the user's last settled day.
	From, To *time.Time
}

// ResyncDay is one re-read day as the store reported it before and after the resync.
type ResyncDay struct {
	Day           time.Time
	Before, After store.ReportRow
}

// ResyncResult is what a resync did.
type ResyncResult struct {
	RunID, UserID string
	Shadow        bool
	// Days are the settled days re-read, oldest first; none when nothing in the range is settled.
	Days []ResyncDay
	// Unsettled counts the days of the range asked for that are not settled yet: the next sync
	// reads them anyway, so a resync leaves them alone.
	Unsettled int
	// Clamped says From was before the user's charge start and was moved to it.
	Clamped          bool
	Charged, Debited int64
	Revisions        []store.Revision // decreases seen: logged, never refunded
	Status           string
}

// Resync re-reads a user's settled days (and the tasks created in them) as if they were not
// settled, so an upstream correction made after SETTLE_LAG reaches the mirror and the ledger:
// increases are charged by the usual increments (exactly once: the ledger's source ids name the
// new totals), decreases are logged and not refunded. It holds the user's lease like any sync,
// so it is safe beside the daemon, and it leaves the settled mark where it was.
func (s *Syncer) Resync(ctx context.Context, o ResyncOptions) (ResyncResult, error) {
	res := ResyncResult{RunID: newID(), UserID: o.UserID, Shadow: !s.opts.ChargeEnabled}
	log := s.log.With(zap.String("run_id", res.RunID), zap.String("user_id", o.UserID))
	ok, err := s.st.HasUser(ctx, o.UserID)
	if err != nil {
		return res, fmt.Errorf("resync: %w", err)
	}
	if !ok {
		return res, fmt.Errorf("user %s: %w", o.UserID, ErrUnknownUser)
	}
	if _, err := s.st.Enrol(ctx, s.clock, o.UserID); err != nil {
		return res, fmt.Errorf("resync: %w", err)
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), claimTimeout)
	lease, err := s.st.Claim(cctx, store.ClaimRequest{Owner: s.opts.WorkerID, RunID: res.RunID, TTL: s.opts.LeaseTTL,
		UserID: o.UserID, Operator: true, Clock: s.clock, Live: s.opts.ChargeEnabled})
	cancel()
	if err != nil {
		return res, fmt.Errorf("resync: %w", err)
	}
	if lease == nil {
		return res, fmt.Errorf("user %s: %w", o.UserID, ErrUserLeased)
	}
	days, err := s.resyncDays(lease, o, &res)
	if err != nil || len(days) == 0 {
		if rerr := s.st.Release(context.WithoutCancel(ctx), lease); rerr != nil {
			log.Warn("sync.user.release_failed", zap.Error(rerr))
		}
		return res, err
	}
	log.Info("resync.start", zap.Time("from", days[0]), zap.Time("to", days[len(days)-1]), zap.Int("days", len(days)),
		zap.Int("unsettled_left", res.Unsettled), zap.Bool("charge_enabled", s.opts.ChargeEnabled))
	if err := s.resyncLeased(logging.WithLogger(ctx, log), log, lease, days, &res); err != nil {
		return res, err
	}
	log.Info("resync.done", zap.Int("days", len(res.Days)), zap.Int64("charged", res.Charged), zap.Int64("debited", res.Debited),
		zap.Int("decreases", len(res.Revisions)), zap.String("status", res.Status), zap.Bool("shadow", res.Shadow))
	return res, nil
}

// resyncDays resolves the range against the lease: from the charge start's day at the earliest,
// through the last settled day at the latest, at most ResyncMaxDays.
func (s *Syncer) resyncDays(lease *store.Lease, o ResyncOptions, res *ResyncResult) ([]time.Time, error) {
	// The charge start and the settled mark as the sync itself decides them (CHARGE_FROM, else
	// the user's own; the live mark in live mode).
	p := s.newPass(lease)
	from := startOfDay(p.chargeFrom)
	if o.From != nil {
		if f := startOfDay(*o.From); f.Before(from) {
			res.Clamped = true
		} else {
			from = f
		}
	}
	if p.settled == nil {
		if o.To != nil {
			res.Unsettled = int(startOfDay(*o.To).Sub(from)/day) + 1
		}
		return nil, nil // nothing is settled yet: the next sync reads every day
	}
	last := startOfDay(*p.settled).Add(-day) // the mark is the first unsettled day
	to := last
	if o.To != nil {
		to = startOfDay(*o.To)
		if to.After(last) {
			res.Unsettled = int(to.Sub(last) / day)
			to = last
		}
	}
	if to.Before(from) {
		return nil, nil
	}
	if n := int(to.Sub(from)/day) + 1; n > ResyncMaxDays {
		return nil, &RangeError{Msg: fmt.Sprintf(
			"the settled days %s to %s are %d days; a resync re-reads at most %d a run: give --from %s --to %s, then resync the rest from %s",
			from.Format(time.DateOnly), to.Format(time.DateOnly), n, ResyncMaxDays, from.Format(time.DateOnly),
			from.Add((ResyncMaxDays-1)*day).Format(time.DateOnly), from.Add(ResyncMaxDays*day).Format(time.DateOnly))}
	}
	var days []time.Time
	for d := from; !d.After(to); d = d.Add(day) {
		days = append(days, d)
	}
	return days, nil
}

// resyncLeased reads and applies the resync while keeping the lease alive, as a held
// sync does (held.go). A failure gives the user back without recording it in sync_state: the operator
// sees it, and the user's own schedule and backoff are not the resync's to change.
func (s *Syncer) resyncLeased(ctx context.Context, log *zap.Logger, lease *store.Lease, days []time.Time, res *ResyncResult) error {
	userCtx, cancel := context.WithTimeoutCause(ctx, s.opts.UserTimeout, errUserTimeout)
	defer cancel()
	renewal := s.keepLease(ctx, log, lease, cancel)
	defer renewal.end()

	from, to := days[0], days[len(days)-1].Add(day)
	before, err := s.st.Report(userCtx, lease.UserID, from, to)
	if err == nil {
		err = s.resyncApply(userCtx, log, lease, days, res)
	}
	if renewal.lost() {
		err = store.ErrLeaseLost
	}
	if err != nil {
		if !errors.Is(err, store.ErrLeaseLost) {
			if rerr := s.st.Release(context.WithoutCancel(ctx), lease); rerr != nil {
				log.Warn("sync.user.release_failed", zap.Error(rerr))
			}
		}
		return fmt.Errorf("resync of %s: %w", lease.UserID, err)
	}
	// The lease is released by now; the report still reads only this user's rows.
	after, err := s.st.Report(context.WithoutCancel(ctx), lease.UserID, from, to)
	if err != nil {
		return fmt.Errorf("resync of %s: applied, but the report after it failed: %w", lease.UserID, err)
	}
	for i := range before {
		res.Days = append(res.Days, ResyncDay{Day: before[i].Day, Before: before[i], After: after[i]})
	}
	return nil
}

// resyncApply is a sync's read and write path over the given settled days: the same window
// reads, guard, plan, chunks and final transaction, with the days forced unsettled (never
// skipped as quiet) and the tasks listed by their creation in the range.
func (s *Syncer) resyncApply(ctx context.Context, log *zap.Logger, lease *store.Lease, days []time.Time, res *ResyncResult) error {
	var ur userResult
	p := s.newPass(lease)
	p.days = days
	state, before, err := s.loadAndList(ctx, lease, p.firstDay())
	if err != nil {
		return err
	}
	// The guard adds the re-read windows to every other stored day of each key, and a resync
	// reads every day it names: it never trusts the previous sync's fingerprint.
	if state.SettledKeyTotals, err = s.st.KeyTotalsOutside(ctx, lease.UserID, days); err != nil {
		return err
	}
	state.ReadsFingerprint = ""
	u, err := s.readUsage(ctx, lease, &p, state, before, &ur)
	if err != nil {
		return err
	}
	ch := &chunker{s: s, log: log, lease: lease, pass: p, res: &ur, blocked: map[string]string{}}
	// readTasks starts the listing the overlap before the watermark it is given: the watermark
	// handed in is the range's start plus the overlap, so the listing starts at the range.
	taskFrom := days[0].Add(s.opts.TaskOverlap)
	end := days[len(days)-1].Add(day)
	if end.After(p.now) {
		end = p.now
	}
	if _, _, err = s.readTasks(ctx, log, lease.UserID, end, &taskFrom, ch.emit); err != nil {
		return err
	}
	plan := buildPlan(planInput{
		userID: lease.UserID, runID: res.RunID, now: p.now, chargeFrom: p.chargeFrom, settleLag: s.opts.SettleLag,
		settled: p.settled, windows: u.windows, lifetime: u.lifetime, tasks: ch.pending,
		settledTotals: state.SettledKeyTotals, shadow: p.shadow,
	})
	maps.Copy(plan.BlockedKeys, ch.blocked)
	// Keys this resync's guard halts are logged; keys a sync had halted stay halted in sync_state
	// until a sync decides again (the cleared fingerprint makes the next one read its windows),
	// while this resync's own guard decided its charges.
	for id, why := range plan.BlockedKeys {
		if _, known := lease.BlockedKeys[id]; !known {
			log.Error("charge.key_blocked", zap.String("key_id", id), zap.String("reason", why))
		}
	}
	for id, why := range lease.BlockedKeys {
		if _, ok := plan.BlockedKeys[id]; !ok {
			plan.BlockedKeys[id] = why
		}
	}
	plan.RevisionWindow = s.opts.RevisionWindow
	plan.ChargeFrom = p.chargeFrom
	if !sameTime(plan.SettledThrough, p.settled) {
		// buildPlan moves the mark only over days read from the first unsettled one, which a
		// resync never reads; this states it.
		return fmt.Errorf("resync would move settled_through from %v to %v", p.settled, plan.SettledThrough)
	}
	if err := s.applyUser(ctx, log, lease, plan, &ur); err != nil {
		return err
	}
	res.Status = ur.applied.Status
	res.Charged = ur.applied.Charge.Amount + ur.chunkAmount
	res.Debited = ur.applied.Charge.Debited + ur.chunkDebited
	res.Revisions = ur.applied.Charge.Revisions
	return nil
}

func sameTime(a, b *time.Time) bool {
	return (a == nil) == (b == nil) && (a == nil || a.Equal(*b))
}

package syncer

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/usage-sync/usage-sync/internal/store"
	"github.com/usage-sync/usage-sync/internal/upstream"
)

// The kinds of difference verify reports (docs/operations.md, "What verify reports").
const (
	// DiffKeyMissing: the upstream lists a key the worker's record lacks, or holds as revoked.
	DiffKeyMissing = "key_missing"
	// DiffKeyNotListed: the record holds as active a key the upstream no longer lists.
	DiffKeyNotListed = "key_not_listed"
	// DiffKeyTotal: a key's lifetime total in the record differs from the upstream's in a way no
	// use since the last sync explains (the record is ahead, or the key was not used since).
	DiffKeyTotal = "key_total"
	// DiffSettledUsage: the record's per-purpose totals of the settled days differ from the
	// upstream's totals for those days: the upstream corrected a settled day.
	DiffSettledUsage = "settled_usage"
	// DiffUndercharged: the upstream counts more requests on the settled days than the ledger
	// charged for them.
	DiffUndercharged = "undercharged"
	// DiffOvercharged: the ledger charged more for the settled days than the upstream counts.
	DiffOvercharged = "overcharged"
	// DiffMirrorAltered: a mirror row (api_keys, api_usage) says something the worker's record
	// does not: someone changed the dashboard's copy. Billing reads the record and is unaffected.
	DiffMirrorAltered = "mirror_altered"
)

// Difference is one thing verify found that settled data cannot explain.
type Difference struct {
	Kind    string `json:"kind"`
	Subject string `json:"subject"` // a key id, or "purpose <name>"
	// Upstream is what the upstream says; Ours is the record's, the mirror's or the ledger's figure.
	Upstream int64 `json:"upstream"`
	Ours     int64 `json:"ours"`
	// Rows, when set, is how many rows differ: the difference is a count of rows, not two
	// figures (Upstream and Ours are then zero).
	Rows int64  `json:"rows,omitempty"`
	Fix  string `json:"fix"`
}

// VerifyUser is one user's verdict.
type VerifyUser struct {
	UserID string `json:"user_id"`
	Status string `json:"status"` // sync_state.status ("" when never enrolled)
	// SettledFrom and SettledTo bound the settled days compared, [from, to); nil when none is.
	SettledFrom *time.Time   `json:"settled_from"`
	SettledTo   *time.Time   `json:"settled_to"`
	Differences []Difference `json:"differences"`
	Error       string       `json:"error,omitempty"` // the user could not be read
	dbErr       error        // the database failed: the run cannot go on, and Verify says so
}

// VerifyReport is what Verify found, users in id order.
type VerifyReport struct {
	Users           []VerifyUser `json:"users"`
	Checked         int          `json:"users_checked"`
	WithDifferences int          `json:"users_with_differences"`
	Unreadable      int          `json:"users_unreadable"`
}

// OK reports whether every user was read and none differs.
func (r VerifyReport) OK() bool { return r.WithDifferences == 0 && r.Unreadable == 0 }

// Verify compares, per user (or only the one named), the upstream's lifetime key listing and its
// per-purpose totals of the settled days with the mirror (api_keys, api_usage) and the ledger.
// It writes nothing: no enrolment, no lease, no sync_state, no ledger row. Users are read
// SYNC_CONCURRENCY at a time, through the client's retries and pacing.
func (s *Syncer) Verify(ctx context.Context, only string) (VerifyReport, error) {
	var rep VerifyReport
	targets, err := s.st.VerifyTargets(ctx, only)
	if err != nil {
		return rep, fmt.Errorf("verify: %w", err)
	}
	if only != "" && len(targets) == 0 {
		return rep, fmt.Errorf("user %s: %w", only, ErrUnknownUser)
	}
	rep.Users = make([]VerifyUser, len(targets))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(s.opts.Concurrency, len(targets)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				rep.Users[i] = s.verifyUser(ctx, targets[i])
			}
		}()
	}
	for i := range targets {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("verify: %w", err)
	}
	for _, u := range rep.Users {
		if u.dbErr != nil && store.IsUnavailable(u.dbErr) {
			return rep, fmt.Errorf("verify: %w", u.dbErr)
		}
		rep.Checked++
		switch {
		case u.Error != "":
			rep.Unreadable++
		case len(u.Differences) > 0:
			rep.WithDifferences++
		}
	}
	s.log.Info("verify.done", zap.Int("users", rep.Checked), zap.Int("with_differences", rep.WithDifferences),
		zap.Int("unreadable", rep.Unreadable))
	return rep, nil
}

func (s *Syncer) verifyUser(ctx context.Context, t store.VerifyTarget) VerifyUser {
	v := VerifyUser{UserID: t.UserID, Status: t.Status, Differences: []Difference{}}
	log := s.log.With(zap.String("user_id", t.UserID))
	// The charge start as a sync decides it (newPass): CHARGE_FROM, else in live mode the user's
	// go-live (none yet: nothing was charged, so no settled day is compared), else its enrolment.
	var chargeFrom *time.Time
	switch {
	case s.opts.ChargeFrom != nil:
		chargeFrom = s.opts.ChargeFrom
	case s.opts.ChargeEnabled:
		chargeFrom = t.LiveAt
	default:
		chargeFrom = t.EnrolledAt
	}
	// The settled days as a sync of this mode reads them: in live mode, those a live sync has
	// settled (days that settled in shadow mode are read again, and charged, by the next ones).
	settled := t.SettledThrough
	if s.opts.ChargeEnabled {
		settled = t.LiveSettledThrough
	}
	var from, to time.Time
	if chargeFrom != nil && settled != nil && settled.After(startOfDay(*chargeFrom)) {
		from, to = startOfDay(*chargeFrom), startOfDay(*settled)
		v.SettledFrom, v.SettledTo = &from, &to
	}
	fail := func(err error) VerifyUser {
		v.Error = errorText(err)
		log.Warn("verify.user.unreadable", zap.String("error", v.Error))
		return v
	}
	// The mirror first: whatever the upstream says afterwards is at least as new.
	m, err := s.st.StoredOf(ctx, t.UserID, from, to, !s.opts.ChargeEnabled)
	if err != nil {
		v.dbErr = err
		return fail(err)
	}
	lifetime, err := s.up.ListKeys(ctx, t.UserID, nil, nil)
	if err != nil {
		return fail(fmt.Errorf("lifetime key listing: %w", err))
	}
	in := verifyInput{user: t.UserID, status: t.Status, lifetime: lifetime, stored: m}
	if v.SettledFrom != nil {
		if in.days, err = s.up.APIUsage(ctx, t.UserID, &from, &to); err != nil {
			return fail(fmt.Errorf("per-purpose totals of the settled days: %w", err))
		}
		in.charged = in.days
		if cf := chargeFrom.UTC(); cf.After(from) {
			// The charge start's day is charged from CHARGE_FROM on only (docs/design.md, "Charging").
			if in.charged, err = s.up.APIUsage(ctx, t.UserID, &cf, &to); err != nil {
				return fail(fmt.Errorf("per-purpose totals from the charge start: %w", err))
			}
		}
		in.from, in.to, in.settled = from, to, true
	}
	v.Differences = append(v.Differences, compareMirror(in)...)
	if len(v.Differences) > 0 {
		log.Warn("verify.user.differs", zap.Int("differences", len(v.Differences)), zap.String("first", v.Differences[0].Kind),
			zap.String("subject", v.Differences[0].Subject))
	}
	return v
}

// verifyInput is what one user's comparison needs: the upstream's answers and the database's.
type verifyInput struct {
	user, status string
	lifetime     upstream.KeyList
	stored       store.Stored
	settled      bool
	from, to     time.Time
	// days are the upstream's per-purpose totals of the settled days; charged the same from the
	// charge start on (they differ when it falls inside its day).
	days, charged upstream.UsageMetrics
}

// compareMirror is verify's rule, pure: what the upstream says against what the worker's record,
// the mirror and the ledger hold, keeping only what settled data cannot explain. A key's total may
// lag the upstream's while the key has been used since the last sync (the next sync catches up),
// and unsettled days are still moving; everything else must agree.
func compareMirror(in verifyInput) []Difference {
	once := "usage-sync --once --user " + in.user
	resync := "usage-sync resync --user " + in.user
	if in.settled {
		resync += fmt.Sprintf(" --from %s --to %s", in.from.Format(time.DateOnly), in.to.Add(-day).Format(time.DateOnly))
	}
	restore := "restore the dashboard's copy from the worker's record (docs/operations.md, \"Restoring the mirror\"); billing is unaffected"
	var out []Difference
	record := map[string]store.RecordKey{}
	for _, k := range in.stored.Keys {
		record[k.ID] = k
		if k.MirrorDiffers {
			out = append(out, Difference{Kind: DiffMirrorAltered, Subject: "api_keys " + k.ID, Upstream: value(k.TotalRequests), Ours: value(k.MirrorTotal), Fix: restore})
		}
	}
	if n := in.stored.KeyDaysDiffering; n > 0 {
		out = append(out, Difference{Kind: DiffMirrorAltered, Subject: "api_usage per-key rows", Rows: n, Fix: restore})
	}
	listed := map[string]bool{}
	for _, k := range in.lifetime.Keys {
		listed[k.ID] = true
		if k.TotalRequests == nil {
			continue // unknown is not zero: nothing to compare
		}
		up := *k.TotalRequests
		r, ok := record[k.ID]
		if !ok || r.Revoked || r.TotalRequests == nil {
			out = append(out, Difference{Kind: DiffKeyMissing, Subject: k.ID, Upstream: up, Fix: once})
			continue
		}
		ours := *r.TotalRequests
		usedSince := k.LastUsedAt != nil && (r.LastUsedAt == nil || k.LastUsedAt.Sub(*r.LastUsedAt) >= time.Microsecond)
		if ours > up || (ours < up && !usedSince) {
			out = append(out, Difference{Kind: DiffKeyTotal, Subject: k.ID, Upstream: up, Ours: ours, Fix: once})
		}
	}
	// A listing that dropped entries cannot say a key is gone.
	if in.lifetime.Dropped == 0 {
		for _, r := range in.stored.Keys {
			if !r.Revoked && !listed[r.ID] {
				out = append(out, Difference{Kind: DiffKeyNotListed, Subject: r.ID, Ours: value(r.TotalRequests), Fix: once})
			}
		}
	}
	if in.settled {
		for _, p := range purposes(in.days.RequestsByPurpose, in.stored.Purposes) {
			if up, ours := in.days.RequestsByPurpose[p], in.stored.Purposes[p]; up != ours {
				out = append(out, Difference{Kind: DiffSettledUsage, Subject: "purpose " + p, Upstream: up, Ours: ours, Fix: resync})
			}
		}
		for _, p := range purposes(in.stored.Purposes, in.stored.MirrorPurposes) {
			if rec, mir := in.stored.Purposes[p], in.stored.MirrorPurposes[p]; rec != mir {
				out = append(out, Difference{Kind: DiffMirrorAltered, Subject: "api_usage purpose " + p, Upstream: rec, Ours: mir, Fix: restore})
			}
		}
		for _, p := range purposes(in.charged.RequestsByPurpose, in.stored.Charged) {
			up, ours := in.charged.RequestsByPurpose[p], in.stored.Charged[p]
			switch {
			case up > ours:
				fix := resync
				if in.status == "degraded" {
					fix = "charging is halted for a key (sync_state.blocked_keys): once the upstream's data is consistent, " + resync
				}
				out = append(out, Difference{Kind: DiffUndercharged, Subject: "purpose " + p, Upstream: up, Ours: ours, Fix: fix})
			case up < ours:
				out = append(out, Difference{Kind: DiffOvercharged, Subject: "purpose " + p, Upstream: up, Ours: ours,
					Fix: "investigate: the worker never refunds; a correction down is logged as credits.revision_down (see docs/operations.md)"})
			}
		}
	}
	return out
}

// purposes is the sorted union of the maps' keys.
func purposes(a, b map[string]int64) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range []map[string]int64{a, b} {
		for p := range m {
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	sort.Strings(out)
	return out
}

func value(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

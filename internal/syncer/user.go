package syncer

import (
	"context"
	"fmt"
	"maps"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/usage-sync/usage-sync/internal/store"
	"github.com/usage-sync/usage-sync/internal/upstream"
)

type window struct {
	day      time.Time // UTC midnight
	keys     upstream.KeyList
	partial  *upstream.KeyList // [CHARGE_FROM, day end) when CHARGE_FROM falls inside this day
	purposes upstream.UsageMetrics
	// partialPurposes is the per-purpose totals of [CHARGE_FROM, day end), read with partial
	// only when the day is settled: the remainder charged as unlisted_requests is of that range.
	partialPurposes *upstream.UsageMetrics
}

type userResult struct {
	days, keys, tasksSeen, pages, chunks int
	quiet                                bool
	// What the chunks did, as counts only: a pass must not hold what it has applied.
	chunkTasksWritten, chunkAmount, chunkDebited int64
	chunkCharges                                 int
	applied                                      store.Applied
}

func (r userResult) fields() []zap.Field {
	a := r.applied
	return []zap.Field{
		zap.String("status", a.Status), zap.Int("days", r.days), zap.Bool("quiet", r.quiet), zap.Int("keys", r.keys),
		zap.Int64("keys_written", a.KeysWritten), zap.Int64("keys_revoked", a.KeysRevoked),
		zap.Int64("usage_rows_written", a.UsageWritten+a.PurposeWritten),
		zap.Int("tasks_seen", r.tasksSeen), zap.Int("task_pages", r.pages), zap.Int("task_chunks", r.chunks),
		zap.Int64("tasks_written", a.TasksWritten+r.chunkTasksWritten),
		zap.Int("charges", len(a.Charge.Posted)+r.chunkCharges),
		zap.Int64("charged", a.Charge.Amount+r.chunkAmount), zap.Int64("debited", a.Charge.Debited+r.chunkDebited),
	}
}

// pass is what one user's sync settles before it reads: its clock reading, CHARGE_FROM, the
// mode, the settled mark it reads from and the days it reads.
type pass struct {
	now, chargeFrom time.Time
	shadow          bool
	settled         *time.Time
	days            []time.Time
}

// With CHARGE_FROM empty, a live pass charges from the user's go-live (the later of its
// enrolment and the first take by a live worker, recorded by the claim), so a shadow trial's
// usage is never charged; a shadow pass observes from the enrolment. A live pass reads from the
// live settled mark: a day that settled while the worker was back in shadow mode was charged
// only as shadow: rows, and is read again, and charged, once charging resumes.
func (s *Syncer) newPass(lease *store.Lease) pass {
	p := pass{now: s.clock.Now().UTC(), chargeFrom: lease.EnrolledAt.UTC(), shadow: !s.opts.ChargeEnabled,
		settled: lease.SettledThrough}
	switch {
	case s.opts.ChargeFrom != nil:
		p.chargeFrom = s.opts.ChargeFrom.UTC()
	case !p.shadow && lease.LiveAt != nil:
		p.chargeFrom = lease.LiveAt.UTC()
	}
	if !p.shadow {
		p.settled = lease.LiveSettledThrough
	}
	p.days = passDays(p.now, p.chargeFrom, p.settled, s.opts.MaxBackfillDays)
	return p
}

// firstDay is the oldest day the pass re-reads: the stored day rows before it are settled.
func (p pass) firstDay() time.Time {
	if len(p.days) > 0 {
		return p.days[0]
	}
	return startOfDay(p.now)
}

// readUser reads everything for one user without holding a transaction across a request:
// task pages are applied in chunks as they arrive (each chunk its own short transaction), and
// what is left — keys, usage, key charges, the last tasks and sync_state — is returned as the
// plan of the user's final transaction, which the caller applies (or hands to a writer).
//
// The reads go out in rounds (docs/design.md, "What a cycle may cost"; docs/engineering.md,
// "Cycles and scale"): the lifetime listing at once, the task pass as soon as the stored state
// gives its watermark, the windows once the lifetime listing has said whether they are needed,
// and the guard's second lifetime listing once every window has ended.
func (s *Syncer) readUser(ctx context.Context, log *zap.Logger, runID string, lease *store.Lease) (*store.Plan, userResult, error) {
	var res userResult
	p := s.newPass(lease)
	// The task pass counts into a result of its own: it runs alongside the usage reads, which
	// write res; the two are merged once both have ended.
	var taskRes userResult
	ch := &chunker{s: s, log: log, lease: lease, pass: p, res: &taskRes, blocked: map[string]string{}}
	var (
		state userState
		u     usageRead
	)
	g, gctx := errgroup.WithContext(ctx)
	stateLoaded := make(chan struct{})
	g.Go(func() error {
		st, err := s.st.LoadUser(gctx, lease, p.firstDay(), s.opts.RevisionInterval)
		if err != nil {
			return err
		}
		state = userState{st}
		close(stateLoaded)
		// The task pass needs only the stored watermark: it goes out now, alongside the
		// lifetime listing (and for a cold user, alongside the windows that follow it).
		g.Go(func() error {
			var err error
			taskRes.tasksSeen, taskRes.pages, err = s.readTasks(gctx, log, lease.UserID, p.now, state.watermark(), ch.emit)
			return err
		})
		return nil
	})
	g.Go(func() error {
		before, err := s.up.ListKeys(gctx, lease.UserID, nil, nil)
		if err != nil {
			return fmt.Errorf("lifetime key listing: %w", err)
		}
		select {
		case <-stateLoaded:
		case <-gctx.Done():
			return nil // the state's load failed and said why
		}
		u, err = s.readUsage(gctx, lease, &p, state, before, &res)
		return err
	})
	if err := g.Wait(); err != nil {
		return nil, res, err
	}
	res.tasksSeen, res.pages, res.chunks = taskRes.tasksSeen, taskRes.pages, taskRes.chunks
	res.chunkTasksWritten, res.chunkAmount, res.chunkDebited = taskRes.chunkTasksWritten, taskRes.chunkAmount, taskRes.chunkDebited
	res.chunkCharges = taskRes.chunkCharges
	plan := buildPlan(planInput{
		userID: lease.UserID, runID: runID, now: p.now, chargeFrom: p.chargeFrom, settleLag: s.opts.SettleLag,
		settled: p.settled, windows: u.windows, lifetime: u.lifetime, tasks: ch.pending,
		settledTotals: state.SettledKeyTotals, shadow: p.shadow,
	})
	maps.Copy(plan.BlockedKeys, ch.blocked)
	plan.ReadsFingerprint = u.fingerprint
	plan.RevisionWindow = s.opts.RevisionWindow
	plan.ChargeFrom = p.chargeFrom
	plan.Swept = state.SweepDue
	logBlocked(log, lease, plan)
	if s.hooks != nil && s.hooks.BeforeApply != nil {
		if err := s.hooks.BeforeApply(ctx, lease.UserID); err != nil {
			return nil, res, err
		}
	}
	return plan, res, nil
}

// loadAndList loads the user's stored state while its lifetime key listing is in flight:
// neither needs the other.
func (s *Syncer) loadAndList(ctx context.Context, lease *store.Lease, firstDay time.Time) (userState, upstream.KeyList, error) {
	type loaded struct {
		state store.UserState
		err   error
	}
	stateCh := make(chan loaded, 1)
	go func() {
		st, err := s.st.LoadUser(ctx, lease, firstDay, s.opts.RevisionInterval)
		stateCh <- loaded{st, err}
	}()
	before, err := s.up.ListKeys(ctx, lease.UserID, nil, nil)
	ld := <-stateCh
	if err != nil {
		return userState{}, before, fmt.Errorf("lifetime key listing: %w", err)
	}
	return userState{ld.state}, before, ld.err
}

// userState is the stored state a sync starts from.
type userState struct{ store.UserState }

// watermark is where the task pass starts: finished tasks are re-read for revisions at most
// once per REVISION_INTERVAL (a sweep); between sweeps the pass starts at the oldest unfinished
// task.
func (st userState) watermark() *time.Time {
	if st.SweepDue {
		return st.TaskWatermark
	}
	return st.TaskWatermarkOpen
}

// usageRead is what the key and usage reads of a sync brought.
type usageRead struct {
	windows     []window
	lifetime    upstream.KeyList
	fingerprint string // "" when something moved while the windows were read
}

// readUsage reads the day windows and the lifetime listing the guard compares them with. The
// lifetime listing comes first: when nothing in it moved since a previous sync that saw nothing
// move while it read, the unsettled windows cannot have changed, and only the days due to
// settle are read (docs/scale.md).
func (s *Syncer) readUsage(ctx context.Context, lease *store.Lease, p *pass, state userState, before upstream.KeyList, res *userResult) (usageRead, error) {
	u := usageRead{fingerprint: listingFingerprint(before, p.chargeFrom, p.shadow), lifetime: before}
	res.quiet = u.fingerprint != "" && u.fingerprint == state.ReadsFingerprint && len(lease.BlockedKeys) == 0
	if res.quiet {
		p.days = settleDue(p.days, p.now, s.opts.SettleLag)
	}
	res.days = len(p.days)
	var err error
	if u.windows, err = s.readWindows(ctx, lease.UserID, p); err != nil {
		return u, err
	}
	if !res.quiet {
		// Read again after the windows, so a request counted in a window is also in the lifetime
		// total the guard compares it with; the two listings agreeing means nothing moved while
		// the windows were read. A quiet sync's windows (settling reads only) are of days that
		// ended before its listing, so that listing already counts them. readWindows returns
		// only once every window read has ended: none is read after this listing.
		if u.lifetime, err = s.up.ListKeys(ctx, lease.UserID, nil, nil); err != nil {
			return u, fmt.Errorf("lifetime key listing: %w", err)
		}
		if listingFingerprint(u.lifetime, p.chargeFrom, p.shadow) != u.fingerprint {
			u.fingerprint = ""
		}
	}
	res.keys = len(u.lifetime.Keys)
	return u, nil
}

// chunker applies a task pass's pages in chunks of chunkPages as they arrive, so the pass holds
// at most one chunk; what is pending when the pass ends goes into the final transaction.
type chunker struct {
	s            *Syncer
	log          *zap.Logger
	lease        *store.Lease
	pass         pass
	res          *userResult
	pending      []upstream.Task // pages not yet applied by a chunk
	pendingPages int
	blocked      map[string]string // tasks with negative counts that chunks left out
}

func (c *chunker) emit(ctx context.Context, page []upstream.Task) error {
	c.pending = append(c.pending, page...)
	c.pendingPages++
	if c.pendingPages < c.s.chunkPages {
		return nil
	}
	rows, charges := planTasks(c.lease.UserID, c.pass.chargeFrom, c.pending, c.blocked)
	c.pending, c.pendingPages = c.pending[:0], 0
	applied, err := c.s.st.ApplyChunk(ctx, c.lease, store.TaskChunk{Tasks: rows, Charges: charges, Shadow: c.pass.shadow})
	if err != nil {
		return err
	}
	c.res.chunks++
	c.res.chunkTasksWritten += applied.TasksWritten
	c.res.chunkCharges += len(applied.Charge.Posted)
	c.res.chunkAmount += applied.Charge.Amount
	c.res.chunkDebited += applied.Charge.Debited
	logCharges(c.log, applied.Charge, c.pass.shadow)
	c.s.observeCharge(applied.Charge)
	if c.s.hooks != nil && c.s.hooks.AfterChunk != nil {
		return c.s.hooks.AfterChunk(ctx, c.lease.UserID, c.res.chunks)
	}
	return nil
}

// logBlocked logs each key whose charges the plan halts, and each the lease had halted that is
// charged again.
func logBlocked(log *zap.Logger, lease *store.Lease, plan *store.Plan) {
	for id, why := range plan.BlockedKeys {
		log.Error("charge.key_blocked", zap.String("key_id", id), zap.String("reason", why))
	}
	for id := range lease.BlockedKeys {
		if _, still := plan.BlockedKeys[id]; !still {
			log.Info("charge.key_unblocked", zap.String("key_id", id))
		}
	}
}

// applyUser runs a user's final transaction. It runs to completion even during shutdown, so
// what was read is not thrown away.
func (s *Syncer) applyUser(ctx context.Context, log *zap.Logger, lease *store.Lease, plan *store.Plan, res *userResult) error {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), applyTimeout)
	defer cancel()
	var err error
	res.applied, err = s.st.Apply(actx, lease, plan)
	if err != nil {
		return err
	}
	logCharges(log, res.applied.Charge, plan.Shadow)
	s.observeCharge(res.applied.Charge)
	return nil
}

// readWindows reads the pass's day windows, all of them at once: each UTC day's key listing and
// per-purpose totals, and the listing from CHARGE_FROM on when it falls inside the day (with the
// per-purpose totals of that range too when the day is settled: only a settled day's remainder
// is charged). No read depends on another. It returns once every read has ended, the windows in
// day order.
func (s *Syncer) readWindows(ctx context.Context, user string, p *pass) ([]window, error) {
	windows := make([]window, len(p.days))
	g, gctx := errgroup.WithContext(ctx)
	for i, start := range p.days {
		w := &windows[i]
		w.day = start
		end := start.Add(day)
		g.Go(func() error {
			var err error
			if w.keys, err = s.up.ListKeys(gctx, user, &start, &end); err != nil {
				return fmt.Errorf("window %s: %w", start.Format(time.DateOnly), err)
			}
			return nil
		})
		g.Go(func() error {
			var err error
			if w.purposes, err = s.up.APIUsage(gctx, user, &start, &end); err != nil {
				return fmt.Errorf("window %s: %w", start.Format(time.DateOnly), err)
			}
			return nil
		})
		from := p.chargeFrom
		if !from.After(start) || !from.Before(end) {
			continue
		}
		g.Go(func() error {
			l, err := s.up.ListKeys(gctx, user, &from, &end)
			if err != nil {
				return fmt.Errorf("window from CHARGE_FROM %s: %w", from.Format(time.RFC3339Nano), err)
			}
			w.partial = &l
			return nil
		})
		if settled := !p.now.Before(start.Add(day + s.opts.SettleLag)); settled {
			g.Go(func() error {
				pu, err := s.up.APIUsage(gctx, user, &from, &end)
				if err != nil {
					return fmt.Errorf("window from CHARGE_FROM %s: %w", from.Format(time.RFC3339Nano), err)
				}
				w.partialPurposes = &pu
				return nil
			})
		}
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return windows, nil
}

// readTasks lists the user's tasks created after the watermark (less the overlap) and before
// the pass's start, page by page, handing each page to emit as it arrives. created_before is
// fixed for the pass so tasks created while it runs cannot shift the pages; the order is not
// documented, so the pass keeps paging until it has covered the count the upstream reported.
// The pass is bounded: it stops with a *PagingError when pages bring nothing new, when it passes
// the page cap, or when the count claimed could not be listed within the cap. It remembers only
// hashes of the ids it saw, so its memory is bounded by the cap, not by the user's history.
func (s *Syncer) readTasks(ctx context.Context, log *zap.Logger, user string, passStart time.Time, watermark *time.Time, emit func(context.Context, []upstream.Task) error) (seen, pages int, err error) {
	q := upstream.TaskQuery{CreatedBefore: &passStart, Limit: taskPageSize}
	if watermark != nil {
		after := watermark.Add(-s.opts.TaskOverlap)
		q.CreatedAfter = &after
	}
	b := taskBounds{maxPages: s.opts.MaxTaskPages, ids: idSet{}}
	for {
		if b.pages >= b.maxPages {
			return b.seen, b.pages, &PagingError{Kind: KindTasksPageCap, Pages: b.pages,
				Detail: fmt.Sprintf("more than %d pages in one pass without reaching the end", b.maxPages)}
		}
		page, err := s.up.ListTasks(ctx, user, q)
		if err != nil {
			return b.seen, b.pages, fmt.Errorf("task page at offset %d: %w", q.Offset, err)
		}
		if err := b.add(page); err != nil {
			return b.seen, b.pages, err
		}
		if len(page.Tasks) > 0 {
			if err := emit(ctx, page.Tasks); err != nil {
				return b.seen, b.pages, err
			}
		}
		got := len(page.Tasks) + page.Dropped
		q.Offset += got
		// Without a count (the field is optional) a short page is the last one.
		if got == 0 || (page.Count > 0 && q.Offset >= page.Count) || (page.Count <= 0 && got < q.Limit) {
			return b.seen, b.pages, nil
		}
		if b.pages%taskProgressLogPages == 0 {
			log.Info("sync.tasks.progress", zap.Int("pages", b.pages), zap.Int("tasks", b.seen), zap.Int("count", page.Count))
		}
	}
}

// taskBounds counts one task pass's pages and the ids they brought, and says when the pass must
// stop (docs/scale.md).
type taskBounds struct {
	maxPages, pages, seen, stalled int
	ids                            idSet
}

// add counts a page; a *PagingError says the pass cannot end well: the upstream claims more
// tasks than the cap can list, or pages in a row brought nothing new.
func (b *taskBounds) add(page upstream.TaskPage) error {
	b.pages++
	if maxCount := b.maxPages * taskPageSize; page.Count > maxCount {
		return &PagingError{Kind: KindTasksCountAbsurd, Pages: b.pages, Count: page.Count,
			Detail: fmt.Sprintf("the upstream claims %d tasks, more than one pass may list (%d pages of %d)", page.Count, b.maxPages, taskPageSize)}
	}
	fresh := 0
	for _, t := range page.Tasks {
		if b.ids.add(t.ID) {
			fresh++
		}
	}
	b.seen += fresh
	if len(page.Tasks)+page.Dropped == 0 || fresh > 0 {
		b.stalled = 0
		return nil
	}
	b.stalled++
	if b.stalled >= taskStallPagesDefault {
		return &PagingError{Kind: KindTasksNoProgress, Pages: b.pages, Count: page.Count,
			Detail: fmt.Sprintf("%d pages in a row brought no task not already seen", b.stalled)}
	}
	return nil
}

func logCharges(log *zap.Logger, r store.ChargeResult, shadow bool) {
	for _, rev := range r.Revisions {
		if rev.Family == store.FamilyUnlisted {
			log.Error("charge.unlisted_inconsistent", zap.String("subject", rev.Subject),
				zap.Int64("purpose_total", rev.Total), zap.Int64("already_charged", rev.Charged),
				zap.String("action", "nothing charged for this purpose and day"))
			continue
		}
		log.Warn("credits.revision_down", zap.String("subject", rev.Subject), zap.String("family", string(rev.Family)),
			zap.Int64("observed_total", rev.Total), zap.Int64("already_charged", rev.Charged),
			zap.String("action", "not refunded"))
	}
	if len(r.Posted) == 0 {
		return
	}
	log.Info("credits.charged", zap.Int("rows", len(r.Posted)), zap.Int64("amount", r.Amount), zap.Int64("debited", r.Debited),
		zap.Bool("shadow", shadow), zap.Int64("credits_after", r.Posted[len(r.Posted)-1].CreditsAfter))
	if !shadow && r.Shortfall() > 0 {
		log.Warn("credits.insufficient", zap.Int64("amount", r.Amount), zap.Int64("debited", r.Debited),
			zap.Int64("shortfall", r.Shortfall()))
	}
}

package syncer

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/usage-sync/usage-sync/internal/store"
	"github.com/usage-sync/usage-sync/internal/upstream"
)

// taskPageSize is the upstream's maximum page.
const taskPageSize = 100

// applyTimeout bounds the write transaction, which runs to completion even during shutdown so a
// user is never half-written.
const applyTimeout = 2 * time.Minute

type window struct {
	day      time.Time // UTC midnight
	keys     upstream.KeyList
	partial  *upstream.KeyList // [CHARGE_FROM, day end) when CHARGE_FROM falls inside this day
	purposes upstream.UsageMetrics
}

type userResult struct {
	days, keys, tasksSeen, pages int
	applied                      store.Applied
}

func (r userResult) fields() []zap.Field {
	a := r.applied
	return []zap.Field{
		zap.String("status", a.Status), zap.Int("days", r.days), zap.Int("keys", r.keys),
		zap.Int64("keys_written", a.KeysWritten), zap.Int64("keys_revoked", a.KeysRevoked),
		zap.Int64("usage_rows_written", a.UsageWritten+a.PurposeWritten),
		zap.Int("tasks_seen", r.tasksSeen), zap.Int("task_pages", r.pages), zap.Int64("tasks_written", a.TasksWritten),
		zap.Int("charges", len(a.Charge.Posted)), zap.Int64("charged", a.Charge.Amount), zap.Int64("debited", a.Charge.Debited),
	}
}

// syncUser reads everything for one user without holding a transaction, builds the user's
// complete result, and applies it in one transaction.
func (s *Syncer) syncUser(ctx context.Context, log *zap.Logger, runID string, lease *store.Lease) (userResult, error) {
	var res userResult
	now := s.opts.Now().UTC()
	chargeFrom := lease.EnrolledAt.UTC()
	if s.opts.ChargeFrom != nil {
		chargeFrom = s.opts.ChargeFrom.UTC()
	}
	days := passDays(now, chargeFrom, lease.SettledThrough, s.opts.MaxBackfillDays)
	res.days = len(days)
	firstDay := startOfDay(now)
	if len(days) > 0 {
		firstDay = days[0]
	}
	state, err := s.st.LoadUser(ctx, lease.UserID, firstDay, s.opts.RevisionWindow)
	if err != nil {
		return res, err
	}

	windows := make([]window, 0, len(days))
	for _, d := range days {
		w, err := s.readWindow(ctx, lease.UserID, d, chargeFrom)
		if err != nil {
			return res, err
		}
		windows = append(windows, w)
	}
	// The lifetime listing comes after the windows, so a request counted in a window is also in
	// the lifetime total the guard compares it with.
	lifetime, err := s.up.ListKeys(ctx, lease.UserID, nil, nil)
	if err != nil {
		return res, fmt.Errorf("lifetime key listing: %w", err)
	}
	res.keys = len(lifetime.Keys)
	tasks, pages, err := s.readTasks(ctx, log, lease.UserID, now, state.TaskWatermark)
	if err != nil {
		return res, err
	}
	res.tasksSeen, res.pages = len(tasks), pages

	plan := buildPlan(planInput{
		userID: lease.UserID, runID: runID, now: now, chargeFrom: chargeFrom, settleLag: s.opts.SettleLag,
		settled: lease.SettledThrough, windows: windows, lifetime: lifetime, tasks: tasks,
		settledTotals: state.SettledKeyTotals, shadow: !s.opts.ChargeEnabled,
	})
	for id, why := range plan.BlockedKeys {
		log.Error("charge.key_blocked", zap.String("key_id", id), zap.String("reason", why))
	}
	for id := range lease.BlockedKeys {
		if _, still := plan.BlockedKeys[id]; !still {
			log.Info("charge.key_unblocked", zap.String("key_id", id))
		}
	}
	if s.hooks != nil && s.hooks.BeforeApply != nil {
		if err := s.hooks.BeforeApply(ctx, lease.UserID); err != nil {
			return res, err
		}
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), applyTimeout)
	defer cancel()
	res.applied, err = s.st.Apply(actx, lease, plan)
	if err != nil {
		return res, err
	}
	logCharges(log, res.applied.Charge, !s.opts.ChargeEnabled)
	s.observeCharge(res.applied.Charge)
	return res, nil
}

func (s *Syncer) readWindow(ctx context.Context, user string, day, chargeFrom time.Time) (window, error) {
	w := window{day: day}
	end := day.Add(24 * time.Hour)
	var err error
	if w.keys, err = s.up.ListKeys(ctx, user, &day, &end); err != nil {
		return w, fmt.Errorf("window %s: %w", day.Format(time.DateOnly), err)
	}
	if chargeFrom.After(day) && chargeFrom.Before(end) {
		p, err := s.up.ListKeys(ctx, user, &chargeFrom, &end)
		if err != nil {
			return w, fmt.Errorf("window from CHARGE_FROM %s: %w", chargeFrom.Format(time.RFC3339Nano), err)
		}
		w.partial = &p
	}
	if w.purposes, err = s.up.APIUsage(ctx, user, &day, &end); err != nil {
		return w, fmt.Errorf("window %s: %w", day.Format(time.DateOnly), err)
	}
	return w, nil
}

// readTasks lists the user's tasks created after the watermark (less the overlap) and before
// the pass's start, page by page. created_before is fixed for the pass so tasks created while it
// runs cannot shift the pages; the order is not documented, so the pass dedupes by id and keeps
// paging until it has covered the count the upstream reported.
func (s *Syncer) readTasks(ctx context.Context, log *zap.Logger, user string, passStart time.Time, watermark *time.Time) ([]upstream.Task, int, error) {
	q := upstream.TaskQuery{CreatedBefore: &passStart, Limit: taskPageSize}
	if watermark != nil {
		after := watermark.Add(-s.opts.TaskOverlap)
		q.CreatedAfter = &after
	}
	byID := map[string]int{}
	var tasks []upstream.Task
	pages := 0
	for {
		page, err := s.up.ListTasks(ctx, user, q)
		if err != nil {
			return nil, pages, fmt.Errorf("task page at offset %d: %w", q.Offset, err)
		}
		pages++
		for _, t := range page.Tasks {
			if i, ok := byID[t.ID]; ok {
				tasks[i] = t
				continue
			}
			byID[t.ID] = len(tasks)
			tasks = append(tasks, t)
		}
		got := len(page.Tasks) + page.Dropped
		q.Offset += got
		// Without a count (the field is optional) a short page is the last one.
		if got == 0 || (page.Count > 0 && q.Offset >= page.Count) || (page.Count <= 0 && got < q.Limit) {
			break
		}
		if pages%50 == 0 {
			log.Info("sync.tasks.progress", zap.Int("pages", pages), zap.Int("tasks", len(tasks)), zap.Int("count", page.Count))
		}
	}
	return tasks, pages, nil
}

func logCharges(log *zap.Logger, r store.ChargeResult, shadow bool) {
	for _, rev := range r.Revisions {
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

package syncer

import (
	"fmt"
	"maps"
	"time"

	"github.com/usage-sync/usage-sync/internal/store"
	"github.com/usage-sync/usage-sync/internal/upstream"
	"github.com/usage-sync/usage-sync/internal/usage"
)

const day = 24 * time.Hour

func startOfDay(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// firstUnsettled is the oldest day a sync must still read: the day CHARGE_FROM falls in, or the
// first day not yet settled when that is later.
func firstUnsettled(chargeFrom time.Time, settledThrough *time.Time) time.Time {
	first := startOfDay(chargeFrom)
	if settledThrough != nil && settledThrough.After(first) {
		first = startOfDay(*settledThrough)
	}
	return first
}

// passDays lists the UTC days a sync reads: the oldest unsettled days from the day CHARGE_FROM
// falls in, at most maxBackfill of them before today, then today. A longer backlog (an outage,
// a CHARGE_FROM months back) is worked off oldest first over the next cycles: one cycle's work is
// bounded, and no day is ever skipped.
func passDays(now, chargeFrom time.Time, settledThrough *time.Time, maxBackfill int) []time.Time {
	today := startOfDay(now)
	first := firstUnsettled(chargeFrom, settledThrough)
	if first.After(today) {
		return nil
	}
	var days []time.Time
	for d := first; d.Before(today) && len(days) < maxBackfill; d = d.AddDate(0, 0, 1) {
		days = append(days, d)
	}
	return append(days, today)
}

type planInput struct {
	userID, runID   string
	now, chargeFrom time.Time
	settleLag       time.Duration
	settled         *time.Time
	windows         []window
	lifetime        upstream.KeyList
	tasks           []upstream.Task
	settledTotals   map[string]int64
	shadow          bool
}

// buildPlan turns what one sync read into what it writes. It is pure, so every rule of
// docs/design.md's "Semantics" section can be tested without a database or an upstream.
func buildPlan(in planInput) *store.Plan {
	plan := &store.Plan{RunID: in.runID, Shadow: in.shadow, BlockedKeys: negativeKeys(in)}
	lifetime := planKeys(plan, in)
	planUsage(plan, in, lifetime)
	planKeyCharges(plan, in, lifetime)
	planUnlisted(plan, in)
	// Tasks: the part of the pass no chunk has applied yet.
	rows, charges := planTasks(in.userID, in.chargeFrom, in.tasks, plan.BlockedKeys)
	plan.Tasks = rows
	plan.Charges = append(plan.Charges, charges...)
	plan.SettledThrough = settledThrough(in)
	return plan
}

// planKeys mirrors the lifetime listing and returns it by key id.
func planKeys(plan *store.Plan, in planInput) map[string]upstream.Key {
	lifetime := map[string]upstream.Key{}
	for _, k := range in.lifetime.Keys {
		lifetime[k.ID] = k
		plan.Keys = append(plan.Keys, store.KeyRow{
			ID: k.ID, Name: k.Name, Purpose: k.Purpose, Integration: usage.Integration(k.Purpose),
			IsActive: k.IsActive == nil || *k.IsActive, CreatedAt: k.CreatedAt, LastUsedAt: k.LastUsedAt,
			TotalRequests: storable(k.TotalRequests),
		})
	}
	return lifetime
}

// planUsage plans the per-key and per-purpose day rows, and runs the guard (docs/design.md,
// "The guard"): a key whose day windows report more than its lifetime total is blocked.
func planUsage(plan *store.Plan, in planInput, lifetime map[string]upstream.Key) {
	windowSum := maps.Clone(in.settledTotals)
	if windowSum == nil {
		windowSum = map[string]int64{}
	}
	for _, w := range in.windows {
		planWindow(plan, in, w, lifetime, windowSum)
	}
	for id, sum := range windowSum {
		lk, ok := lifetime[id]
		if !ok || lk.TotalRequests == nil {
			continue
		}
		if _, already := plan.BlockedKeys[id]; !already && sum > *lk.TotalRequests {
			plan.BlockedKeys[id] = fmt.Sprintf("its day windows add up to %d requests, more than its lifetime total %d: the upstream's from/to totals are not range-scoped",
				sum, *lk.TotalRequests)
		}
	}
}

// planWindow plans one day's rows and adds each key's count to windowSum.
func planWindow(plan *store.Plan, in planInput, w window, lifetime map[string]upstream.Key, windowSum map[string]int64) {
	listed := map[string]bool{}
	for _, k := range w.keys.Keys {
		if k.TotalRequests == nil {
			continue // "unknown" is not zero: the stored row stays
		}
		listed[k.ID] = true
		if negative(k.TotalRequests) {
			continue // inconsistent: not stored, and the key is blocked
		}
		purpose := k.Purpose
		if lk, ok := lifetime[k.ID]; ok && lk.Purpose != "" {
			purpose = lk.Purpose
		}
		plan.Usage = append(plan.Usage, store.UsageRow{KeyID: k.ID, Purpose: purpose, Day: w.day, Count: *k.TotalRequests})
		windowSum[k.ID] += *k.TotalRequests
		if lk, ok := lifetime[k.ID]; ok && lk.TotalRequests != nil && *k.TotalRequests > *lk.TotalRequests {
			plan.BlockedKeys[k.ID] = fmt.Sprintf("window %s reports %d requests, more than the key's lifetime total %d: the upstream's from/to totals are not range-scoped",
				w.day.Format(time.DateOnly), *k.TotalRequests, *lk.TotalRequests)
		}
	}
	// A key missing from a day's listing had no requests that day only if it was last used
	// before the day began; otherwise its absence says nothing.
	for _, k := range in.lifetime.Keys {
		if listed[k.ID] {
			continue
		}
		if k.LastUsedAt == nil || k.LastUsedAt.Before(w.day) {
			plan.ZeroUsage = append(plan.ZeroUsage, store.KeyDay{KeyID: k.ID, Day: w.day})
		}
	}
	for purpose, n := range w.purposes.RequestsByPurpose {
		if n < 0 {
			continue // inconsistent: the stored total stays
		}
		plan.PurposeUsage = append(plan.PurposeUsage, store.PurposeRow{Purpose: purpose, Day: w.day, Count: n})
	}
}

// planKeyCharges plans the key charges: the chargeable total of each (key, day) window from
// CHARGE_FROM's day on, for keys the guard let through.
func planKeyCharges(plan *store.Plan, in planInput, lifetime map[string]upstream.Key) {
	cfDay := startOfDay(in.chargeFrom)
	for _, w := range in.windows {
		if w.day.Before(cfDay) {
			continue
		}
		src := w.keys
		if w.partial != nil {
			src = *w.partial
		}
		for _, k := range src.Keys {
			if k.TotalRequests == nil || *k.TotalRequests <= 0 {
				continue
			}
			if _, blocked := plan.BlockedKeys[k.ID]; blocked {
				continue
			}
			lk, ok := lifetime[k.ID]
			if !ok || lk.TotalRequests == nil {
				// Revoked between the window and the lifetime listing: it cannot be checked, so
				// it is not charged (docs/design.md, "The guard": charged keys are those still
				// listed).
				continue
			}
			d := w.day.Format(time.DateOnly)
			plan.Charges = append(plan.Charges, store.Charge{
				UserID: in.userID, Family: store.FamilyKey, Subject: k.ID + "/" + d, Total: *k.TotalRequests,
				Meta: map[string]any{"key_id": k.ID, "day": d, "partial_from": partialFrom(w, in.chargeFrom)},
			})
		}
	}
}

// planUnlisted plans, for each settled day from CHARGE_FROM's on, each purpose's total as an
// unlisted_requests observation: the store charges what it exceeds the purpose's key_requests
// rows of the day and its earlier remainders (requests of keys revoked before any listing showed
// them). A purpose with a key the guard halts is left out for the day: its remainder would
// charge the halted key's requests, which the guard refused to trust.
func planUnlisted(plan *store.Plan, in planInput) {
	cfDay := startOfDay(in.chargeFrom)
	halted := map[string]bool{} // purpose → a key of it is blocked
	for _, w := range in.windows {
		for _, k := range w.keys.Keys {
			if _, b := plan.BlockedKeys[k.ID]; b {
				halted[purposeOf(k, in.lifetime)] = true
			}
		}
	}
	for _, k := range in.lifetime.Keys {
		if _, b := plan.BlockedKeys[k.ID]; b {
			halted[k.Purpose] = true
		}
	}
	for _, w := range in.windows {
		if w.day.Before(cfDay) || in.now.Before(w.day.Add(day+in.settleLag)) {
			continue
		}
		src := w.purposes
		if w.partial != nil {
			if w.partialPurposes == nil {
				continue
			}
			src = *w.partialPurposes
		}
		d := w.day.Format(time.DateOnly)
		for purpose, n := range src.RequestsByPurpose {
			if n < 0 || halted[purpose] {
				continue
			}
			plan.Unlisted = append(plan.Unlisted, store.Charge{
				UserID: in.userID, Family: store.FamilyUnlisted, Subject: store.UnlistedSubject(purpose, w.day), Total: n,
				Meta: map[string]any{"purpose": purpose, "day": d, "partial_from": partialFrom(w, in.chargeFrom)},
			})
		}
	}
}

// purposeOf is a window key's purpose as the lifetime listing says, else as the window says.
func purposeOf(k upstream.Key, lifetime upstream.KeyList) string {
	for _, lk := range lifetime.Keys {
		if lk.ID == k.ID && lk.Purpose != "" {
			return lk.Purpose
		}
	}
	return k.Purpose
}

// settledThrough is the plan's settled mark. A day is settled once it has been read at or after
// its end plus the settle lag. The mark advances only over days read back to back from the
// first unsettled one: a backlog pass reads its oldest days and today, and the gap between them
// must stay unsettled.
func settledThrough(in planInput) *time.Time {
	settled := in.settled
	expect := firstUnsettled(in.chargeFrom, in.settled)
	for _, w := range in.windows {
		if !w.day.Equal(expect) || in.now.Before(w.day.Add(day+in.settleLag)) {
			break
		}
		expect = w.day.Add(day)
		next := expect
		settled = &next
	}
	return settled
}

// planTasks turns listed tasks into their rows and the charges of those finished since
// CHARGE_FROM; a chunk of a pass and the pass's final transaction use it alike. A task with a
// negative count is neither stored nor charged, and is named in blocked (the user is degraded).
func planTasks(userID string, chargeFrom time.Time, tasks []upstream.Task, blocked map[string]string) ([]store.TaskRow, []store.Charge) {
	rows := make([]store.TaskRow, 0, len(tasks))
	var charges []store.Charge
	for _, t := range tasks {
		if why := t.NegativeCount(); why != "" {
			blocked[taskSubject(t.ID)] = why + ": a negative count is inconsistent data; the task is neither stored nor charged"
			continue
		}
		row := taskRow(t)
		rows = append(rows, row)
		if row.Finished && !row.CreatedAt.Before(chargeFrom) && row.Billable > 0 {
			charges = append(charges, store.Charge{
				UserID: userID, Family: store.FamilyTask, Subject: t.ID, Total: row.Billable,
				Meta: map[string]any{"task_id": t.ID, "emails": row.Emails, "day": row.CreatedAt.Format(time.DateOnly)},
			})
		}
	}
	return rows, charges
}

func partialFrom(w window, chargeFrom time.Time) any {
	if w.partial == nil {
		return nil
	}
	return chargeFrom.UTC().Format(time.RFC3339Nano)
}

func taskRow(t upstream.Task) store.TaskRow {
	c := usage.CountsOf(t)
	created := time.Time{}
	if t.CreatedAt != nil {
		created = t.CreatedAt.UTC()
	}
	return store.TaskRow{
		ID: t.ID, Status: usage.Status(t), Source: t.Source, WebhookURL: t.WebhookURL,
		Emails: c.Emails, Valid: c.Valid, Invalid: c.Invalid, Catchall: c.Catchall, Unknown: c.Unknown,
		Billable: usage.Billable(t), Progress: progress(t), CreatedAt: created, UpdatedAt: t.UpdatedAt,
		StartedAt: t.StartedAt, FinishedAt: usage.FinishedAt(t), Finished: usage.Finished(t),
	}
}

func progress(t upstream.Task) *float64 {
	if t.Metrics.Progress != nil {
		return t.Metrics.Progress
	}
	if t.Metrics.ProgressPercent != nil {
		p := *t.Metrics.ProgressPercent / 100
		return &p
	}
	return nil
}

// Package usage holds the dashboard's and billing's rules over what the upstream reports: a
// task's status and result columns, the emails it is billed for, and a key purpose's integration.
package usage

import (
	"time"

	"github.com/usage-sync/usage-sync/internal/upstream"
)

// Task status values, as the dashboard's tasks table spells them.
const (
	StatusPending    = "pending"
	StatusProcessing = "processing"
	StatusCompleted  = "completed"
	StatusFailed     = "failed"
)

// Counts are a task's result counts folded into the dashboard's columns.
type Counts struct {
	Emails, Valid, Invalid, Catchall, Unknown int64
}

func nonNeg(n int64) int64 { return max(n, 0) }

func deref(p *int64) int64 {
	if p == nil {
		return 0
	}
	return nonNeg(*p)
}

// Finished reports whether the upstream considers the task done (docs/design.md, "The upstream
// API", point 2).
func Finished(t upstream.Task) bool {
	m := t.Metrics
	if t.FinishedAt != nil {
		return true
	}
	if m.Progress != nil && *m.Progress >= 1 {
		return true
	}
	if m.ProgressPercent != nil && *m.ProgressPercent >= 100 {
		return true
	}
	if m.JobStatus != nil && m.TotalEmailAddresses != nil {
		total := *m.TotalEmailAddresses
		done := nonNeg(m.JobStatus["completed"]) + nonNeg(m.JobStatus["failed"])
		return total >= 1 && done >= total
	}
	return false
}

// resulted returns how many emails got a result and whether the payload says so at all.
func resulted(t upstream.Task) (int64, bool) {
	m := t.Metrics
	if m.VerificationStatus != nil {
		return m.ResultTotal(), true
	}
	if c, ok := m.JobStatus["completed"]; ok {
		return nonNeg(c), true
	}
	return 0, false
}

// Status derives the dashboard status the upstream does not send.
func Status(t upstream.Task) string {
	if Finished(t) {
		if n, known := resulted(t); known && n == 0 {
			return StatusFailed
		}
		// Finished with unknown counts: nothing says the emails failed.
		return StatusCompleted
	}
	m := t.Metrics
	if m.JobStatus["completed"] > 0 || m.JobStatus["failed"] > 0 || m.JobStatus["processing"] > 0 {
		return StatusProcessing
	}
	if (m.Progress != nil && *m.Progress > 0) || (m.ProgressPercent != nil && *m.ProgressPercent > 0) {
		return StatusProcessing
	}
	if m.ResultTotal() > 0 {
		return StatusProcessing
	}
	return StatusPending
}

// CountsOf folds both result vocabularies (pre- and post-2026) into the dashboard's columns.
func CountsOf(t upstream.Task) Counts {
	c := Counts{Emails: deref(t.Metrics.TotalEmailAddresses)}
	for name, n := range t.Metrics.Results() {
		switch name {
		case "valid", "exists":
			c.Valid += n
		case "invalid", "not_exists", "invalid_syntax", "disposable_domain":
			c.Invalid += n
		case "catchall":
			c.Catchall += n
		default:
			c.Unknown += n
		}
	}
	return c
}

// Billable is what the task costs in credits: the emails that got a result, by the best
// evidence the payload carries (docs/design.md, "Tasks"; docs/charging.md).
func Billable(t upstream.Task) int64 {
	if n, known := resulted(t); known {
		return n
	}
	return deref(t.Metrics.TotalEmailAddresses)
}

// FinishedAt is when the upstream says the task finished: finished_at, else the last
// verification's completion once the task counts as finished, else nil.
func FinishedAt(t upstream.Task) *time.Time {
	if t.FinishedAt != nil {
		return t.FinishedAt
	}
	if Finished(t) {
		return t.Metrics.LastVerificationCompletedAt
	}
	return nil
}

// Integration maps a key purpose to the dashboard's name for the integration.
func Integration(purpose string) string {
	p := upstream.NormalizePurpose(purpose)
	if p == upstream.PurposeGoogleSheets {
		return "google-sheets"
	}
	return p
}

package upstream

import (
	"strings"
	"time"
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

// isAggregate reports whether a verification_status name is one of the overlapping
// aggregates: they count emails already counted under a result, so adding them would
// count those emails twice.
func isAggregate(name string) bool {
	switch name {
	case "role_based", "disposable_domain_emails":
		return true
	}
	return false
}

func resultName(name string) string { return strings.ToLower(strings.TrimSpace(name)) }

func nonNeg(n int64) int64 { return max(n, 0) }

func deref(p *int64) int64 {
	if p == nil {
		return 0
	}
	return nonNeg(*p)
}

// Finished reports whether the upstream considers the task done (upstream README §2).
func (t Task) Finished() bool {
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

// ResultTotal is the number of emails with a verification result: every verification_status
// count except the aggregates. 0 when verification_status is absent.
func (t Task) ResultTotal() int64 {
	var n int64
	for name, c := range t.Metrics.VerificationStatus {
		if !isAggregate(resultName(name)) {
			n += nonNeg(c)
		}
	}
	return n
}

// resulted returns how many emails got a result and whether the payload says so at all.
func (t Task) resulted() (int64, bool) {
	m := t.Metrics
	if m.VerificationStatus != nil {
		return t.ResultTotal(), true
	}
	if c, ok := m.JobStatus["completed"]; ok {
		return nonNeg(c), true
	}
	return 0, false
}

// Status derives the dashboard status the upstream does not send.
func (t Task) Status() string {
	if t.Finished() {
		if n, known := t.resulted(); known && n == 0 {
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
	if t.ResultTotal() > 0 {
		return StatusProcessing
	}
	return StatusPending
}

// Counts folds both result vocabularies (pre- and post-2026) into the dashboard's columns.
func (t Task) Counts() Counts {
	c := Counts{Emails: deref(t.Metrics.TotalEmailAddresses)}
	for name, n := range t.Metrics.VerificationStatus {
		n = nonNeg(n)
		switch resultName(name) {
		case "valid", "exists":
			c.Valid += n
		case "invalid", "not_exists", "invalid_syntax", "disposable_domain":
			c.Invalid += n
		case "catchall":
			c.Catchall += n
		case "role_based", "disposable_domain_emails":
		default:
			c.Unknown += n
		}
	}
	return c
}

// Billable is what the task costs in credits: the emails that got a result, by the best
// evidence the payload carries (DESIGN.md, Charging).
func (t Task) Billable() int64 {
	if n, known := t.resulted(); known {
		return n
	}
	return deref(t.Metrics.TotalEmailAddresses)
}

// ReportedFinishedAt is when the upstream says the task finished: finished_at, else the last
// verification's completion once the task counts as finished, else nil.
func (t Task) ReportedFinishedAt() *time.Time {
	if t.FinishedAt != nil {
		return t.FinishedAt
	}
	if t.Finished() {
		return t.Metrics.LastVerificationCompletedAt
	}
	return nil
}

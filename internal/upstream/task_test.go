package upstream

import (
	"testing"
	"time"
)

func TestTaskSemantics(t *testing.T) {
	t.Parallel()
	fin := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	last := time.Date(2026, 1, 1, 11, 59, 0, 0, time.UTC)
	tests := []struct {
		name     string
		task     Task
		finished bool
		status   string
		billable int64
		counts   Counts
		reported *time.Time
	}{
		{
			name:   "nothing known",
			task:   Task{},
			status: StatusPending,
		},
		{
			name:   "pending with emails",
			task:   Task{Metrics: TaskMetrics{TotalEmailAddresses: ptr[int64](5), JobStatus: map[string]int64{"pending": 5}}},
			status: StatusPending, billable: 5, counts: Counts{Emails: 5},
		},
		{
			name: "processing by job status",
			task: Task{Metrics: TaskMetrics{TotalEmailAddresses: ptr[int64](5),
				JobStatus: map[string]int64{"pending": 4, "processing": 1, "completed": 0}}},
			status: StatusProcessing, billable: 0, counts: Counts{Emails: 5},
		},
		{
			name:   "processing by progress",
			task:   Task{Metrics: TaskMetrics{Progress: ptr(0.2)}},
			status: StatusProcessing,
		},
		{
			name:   "processing by results",
			task:   Task{Metrics: TaskMetrics{VerificationStatus: map[string]int64{"valid": 2, "role_based": 9}}},
			status: StatusProcessing, billable: 2, counts: Counts{Valid: 2},
		},
		{
			name:   "aggregates alone are not progress",
			task:   Task{Metrics: TaskMetrics{VerificationStatus: map[string]int64{"role_based": 9, "disposable_domain_emails": 1}}},
			status: StatusPending,
		},
		{
			name: "finished by job status, old vocabulary",
			task: Task{Metrics: TaskMetrics{TotalEmailAddresses: ptr[int64](6),
				JobStatus:                   map[string]int64{"completed": 5, "failed": 1},
				VerificationStatus:          map[string]int64{"exists": 2, "not_exists": 1, "invalid_syntax": 1, "catchall": 1, "unknown": 1},
				LastVerificationCompletedAt: &last}},
			finished: true, status: StatusCompleted, billable: 6,
			counts:   Counts{Emails: 6, Valid: 2, Invalid: 2, Catchall: 1, Unknown: 1},
			reported: &last,
		},
		{
			name: "new vocabulary with aggregates and a novel result",
			task: Task{FinishedAt: &fin, Metrics: TaskMetrics{TotalEmailAddresses: ptr[int64](8),
				VerificationStatus: map[string]int64{"valid": 3, "invalid": 1, "disposable_domain": 1, "catchall": 1,
					"unknown": 1, "spamtrap": 1, "role_based": 4, "disposable_domain_emails": 1}}},
			finished: true, status: StatusCompleted, billable: 8,
			counts:   Counts{Emails: 8, Valid: 3, Invalid: 2, Catchall: 1, Unknown: 2},
			reported: &fin,
		},
		{
			name: "finished, every email failed",
			task: Task{Metrics: TaskMetrics{TotalEmailAddresses: ptr[int64](2),
				JobStatus: map[string]int64{"completed": 0, "failed": 2}}},
			finished: true, status: StatusFailed, billable: 0, counts: Counts{Emails: 2},
		},
		{
			name: "finished with empty verification status",
			task: Task{Metrics: TaskMetrics{ProgressPercent: ptr(100.0), TotalEmailAddresses: ptr[int64](3),
				JobStatus: map[string]int64{"completed": 3}, VerificationStatus: map[string]int64{}}},
			finished: true, status: StatusFailed, billable: 0, counts: Counts{Emails: 3},
		},
		{
			name:     "finished, counts unknown",
			task:     Task{Metrics: TaskMetrics{Progress: ptr(1.0), TotalEmailAddresses: ptr[int64](4)}},
			finished: true, status: StatusCompleted, billable: 4, counts: Counts{Emails: 4},
		},
		{
			name:     "job status short of total",
			task:     Task{Metrics: TaskMetrics{TotalEmailAddresses: ptr[int64](4), JobStatus: map[string]int64{"completed": 2, "failed": 1}}},
			finished: false, status: StatusProcessing, billable: 2, counts: Counts{Emails: 4},
		},
		{
			name:     "zero emails never finish by job status",
			task:     Task{Metrics: TaskMetrics{TotalEmailAddresses: ptr[int64](0), JobStatus: map[string]int64{}}},
			finished: false, status: StatusPending, billable: 0,
		},
		{
			name:     "negative counts clamp",
			task:     Task{FinishedAt: &fin, Metrics: TaskMetrics{TotalEmailAddresses: ptr[int64](-3), VerificationStatus: map[string]int64{"valid": -2, "unknown": 1}}},
			finished: true, status: StatusCompleted, billable: 1, counts: Counts{Unknown: 1},
			reported: &fin,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.task.Finished(); got != tt.finished {
				t.Errorf("Finished() = %v, want %v", got, tt.finished)
			}
			if got := tt.task.Status(); got != tt.status {
				t.Errorf("Status() = %q, want %q", got, tt.status)
			}
			if got := tt.task.Billable(); got != tt.billable {
				t.Errorf("Billable() = %d, want %d", got, tt.billable)
			}
			if got := tt.task.Counts(); got != tt.counts {
				t.Errorf("Counts() = %+v, want %+v", got, tt.counts)
			}
			got := tt.task.ReportedFinishedAt()
			if (got == nil) != (tt.reported == nil) || (got != nil && !got.Equal(*tt.reported)) {
				t.Errorf("ReportedFinishedAt() = %v, want %v", got, tt.reported)
			}
		})
	}
}

func TestReportedFinishedAtNeedsFinished(t *testing.T) {
	t.Parallel()
	last := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	running := Task{Metrics: TaskMetrics{Progress: ptr(0.5), LastVerificationCompletedAt: &last}}
	if got := running.ReportedFinishedAt(); got != nil {
		t.Errorf("running task reported finished at %v", got)
	}
}

func TestPurpose(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, purpose, integration string }{
		{"zapier", "zapier", "zapier"},
		{" Zapier ", "zapier", "zapier"},
		{"n8n", "n8n", "n8n"},
		{"google sheets", "google sheets", "google-sheets"},
		{"google_sheets", "google sheets", "google-sheets"},
		{"google-sheets", "google sheets", "google-sheets"},
		{"Google Sheets", "google sheets", "google-sheets"},
		{"custom", "custom", "custom"},
		{"Make.com", "make.com", "make.com"},
		{"", "", ""},
	}
	for _, tt := range tests {
		if got := NormalizePurpose(tt.in); got != tt.purpose {
			t.Errorf("NormalizePurpose(%q) = %q, want %q", tt.in, got, tt.purpose)
		}
		if got := Integration(tt.in); got != tt.integration {
			t.Errorf("Integration(%q) = %q, want %q", tt.in, got, tt.integration)
		}
	}
}

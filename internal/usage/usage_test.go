package usage

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/usage-sync/usage-sync/internal/simulator"
	"github.com/usage-sync/usage-sync/internal/upstream"
)

func ptr[T any](v T) *T { return &v }

type (
	Task        = upstream.Task
	TaskMetrics = upstream.TaskMetrics
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
			if got := Finished(tt.task); got != tt.finished {
				t.Errorf("Finished() = %v, want %v", got, tt.finished)
			}
			if got := Status(tt.task); got != tt.status {
				t.Errorf("Status() = %q, want %q", got, tt.status)
			}
			if got := Billable(tt.task); got != tt.billable {
				t.Errorf("Billable() = %d, want %d", got, tt.billable)
			}
			if got := CountsOf(tt.task); got != tt.counts {
				t.Errorf("CountsOf() = %+v, want %+v", got, tt.counts)
			}
			got := FinishedAt(tt.task)
			if (got == nil) != (tt.reported == nil) || (got != nil && !got.Equal(*tt.reported)) {
				t.Errorf("FinishedAt() = %v, want %v", got, tt.reported)
			}
		})
	}
}

func TestFinishedAtNeedsFinished(t *testing.T) {
	t.Parallel()
	last := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	running := Task{Metrics: TaskMetrics{Progress: ptr(0.5), LastVerificationCompletedAt: &last}}
	if got := FinishedAt(running); got != nil {
		t.Errorf("running task reported finished at %v", got)
	}
}

func TestIntegration(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, integration string }{
		{"zapier", "zapier"},
		{" Zapier ", "zapier"},
		{"n8n", "n8n"},
		{"google sheets", "google-sheets"},
		{"google_sheets", "google-sheets"},
		{"google-sheets", "google-sheets"},
		{"Google Sheets", "google-sheets"},
		{"custom", "custom"},
		{"Make.com", "make.com"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := Integration(tt.in); got != tt.integration {
			t.Errorf("Integration(%q) = %q, want %q", tt.in, got, tt.integration)
		}
	}
}

// TestRulesOverTheClient applies the rules to tasks as the client decodes them from the
// simulated upstream, over real HTTP.
func TestRulesOverTheClient(t *testing.T) {
	t.Parallel()
	day := time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC)
	sim := simulator.New(simulator.Config{Seed: 1, Users: 1, KeysPerUser: -1, TasksPerUser: -1,
		AdminToken: "adm-usage-test-token", Now: func() time.Time { return day.Add(12 * time.Hour) }})
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(srv.Close)
	user := sim.Users()[0]
	fin := day.Add(2 * time.Hour)
	sim.AddTask(user, simulator.Task{ID: "t-done", CreatedAt: day.Add(time.Hour), Emails: 4, Done: 3, Failed: 1,
		Finished: true, FinishedAt: &fin, Results: map[string]int64{"valid": 2, "invalid": 1, "role_based": 1}, Source: "api_key"})
	sim.AddTask(user, simulator.Task{ID: "t-run", CreatedAt: day.Add(3 * time.Hour), Emails: 5, Done: 1})
	c, err := upstream.New(upstream.Config{BaseURL: srv.URL + "/api/v1", AdminToken: "adm-usage-test-token", Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	page, err := c.ListTasks(context.Background(), user, upstream.TaskQuery{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]Task{}
	for _, task := range page.Tasks {
		seen[task.ID] = task
	}
	done, run := seen["t-done"], seen["t-run"]
	if Status(done) != StatusCompleted || Billable(done) != 3 || !Finished(done) || FinishedAt(done) == nil || !FinishedAt(done).Equal(fin) {
		t.Errorf("t-done: status %q billable %d finished %v at %v", Status(done), Billable(done), Finished(done), FinishedAt(done))
	}
	if Status(run) != StatusProcessing || Finished(run) {
		t.Errorf("t-run: status %q finished %v", Status(run), Finished(run))
	}
}

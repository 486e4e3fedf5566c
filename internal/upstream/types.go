// Package upstream is a typed, retrying client for the Email Verification API endpoints the worker reads.
package upstream

import (
	"strings"
	"time"
)

// Key is one API key summary from GET /api-keys. Totals are range-scoped when the listing was
// asked for a window, lifetime otherwise.
type Key struct {
	ID         string
	Name       string
	Purpose    string // canonical, see NormalizePurpose
	IsActive   *bool
	CreatedAt  *time.Time
	LastUsedAt *time.Time
	// TotalRequests is nil when the upstream did not say: unknown is not zero, and the
	// worker must not turn a missing count into a zero-usage day.
	TotalRequests *int64
}

// KeyList is the answer of GET /api-keys.
type KeyList struct {
	Count   int
	Keys    []Key
	Dropped int   // entries without a usable id, skipped
	Drops   Drops // Dropped by reason
}

// UsageMetrics is the answer of GET /metrics/api-usage.
type UsageMetrics struct {
	UserID            string // whom the upstream says the totals are of; "" when it did not say
	TotalRequests     *int64
	TotalAPIKeys      *int64
	RequestsByPurpose map[string]int64 // canonical purposes, spellings merged by summing; never nil
	APIKeysByPurpose  map[string]int64 // canonical purposes, spellings merged by summing; never nil
	LastUsedAt        *time.Time
}

// TaskMetrics is a task's "metrics" object.
type TaskMetrics struct {
	TotalEmailAddresses *int64
	JobStatus           map[string]int64 // nil when absent or null
	// VerificationStatus holds result counts under the names the upstream sent (either
	// vocabulary, plus aggregates); nil when absent or null.
	VerificationStatus          map[string]int64
	Progress                    *float64
	ProgressPercent             *float64
	LastVerificationRequestedAt *time.Time
	LastVerificationCompletedAt *time.Time
}

// Task is one task from GET /tasks. The worker never reads GET /tasks/{id}: its per-email jobs
// can be 10,000 entries, and the listing's metrics are all the worker needs.
type Task struct {
	ID, UserID, WebhookURL, Source              string // Source: "frontend", "api_key", or "" when absent
	CreatedAt, UpdatedAt, StartedAt, FinishedAt *time.Time
	Metrics                                     TaskMetrics
}

// TaskPage is one page of GET /tasks. Count is the number of matching tasks (0 when the
// upstream did not say), not the page size.
type TaskPage struct {
	Count, Limit, Offset int
	Tasks                []Task
	Dropped              int   // entries without a usable id or created_at, or of another user, skipped
	Drops                Drops // Dropped by reason
}

// TaskQuery filters GET /tasks. Zero Limit or Offset leaves the upstream's default.
type TaskQuery struct {
	CreatedAfter, CreatedBefore *time.Time
	Limit, Offset               int
}

// Canonical key purposes as the upstream names them.
const (
	PurposeZapier       = "zapier"
	PurposeN8N          = "n8n"
	PurposeGoogleSheets = "google sheets"
	PurposeCustom       = "custom"
)

// NormalizePurpose maps the spellings the upstream has used for a key purpose to one
// canonical form, so totals of "google_sheets" and "google sheets" land in one bucket.
// Unknown purposes are kept, lower-cased and trimmed.
func NormalizePurpose(p string) string {
	s := strings.ToLower(strings.TrimSpace(p))
	folded := strings.Join(strings.FieldsFunc(s, func(r rune) bool {
		return r == '_' || r == '-' || r == ' ' || r == '\t'
	}), " ")
	if folded == PurposeGoogleSheets || folded == "googlesheets" {
		return PurposeGoogleSheets
	}
	return s
}

package upstream

import (
	"strings"
	"testing"
	"time"
)

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestDecodeKeyListTolerant(t *testing.T) {
	t.Parallel()
	body := []byte(`{
		"count": 5,
		"surprise": {"nested": [1, 2]},
		"keys": [
			{"id": "k1", "name": "Zap", "purpose": "zapier", "is_active": true,
			 "created_at": "2026-01-02T03:04:05Z", "last_used_at": "2026-01-03T00:00:00.123456789Z",
			 "total_requests": 12, "extra": "ignored"},
			{"id": "k2", "name": null, "purpose": "Google_Sheets", "is_active": null,
			 "created_at": null, "last_used_at": "", "total_requests": null},
			{"id": "k3", "purpose": "google-sheets", "total_requests": "7", "last_used_at": "yesterday"},
			{"name": "no id", "total_requests": 3},
			null
		]
	}`)
	got, err := decodeKeyList(body)
	if err != nil {
		t.Fatal(err)
	}
	if got.Count != 5 || got.Dropped != 2 || len(got.Keys) != 3 {
		t.Fatalf("count=%d dropped=%d keys=%d, want 5, 2, 3", got.Count, got.Dropped, len(got.Keys))
	}
	k1, k2, k3 := got.Keys[0], got.Keys[1], got.Keys[2]
	if k1.ID != "k1" || k1.Name != "Zap" || k1.Purpose != "zapier" || k1.IsActive == nil || !*k1.IsActive {
		t.Errorf("k1 = %+v", k1)
	}
	if k1.TotalRequests == nil || *k1.TotalRequests != 12 {
		t.Errorf("k1 total = %v, want 12", k1.TotalRequests)
	}
	if want := mustTime(t, "2026-01-03T00:00:00.123456789Z"); k1.LastUsedAt == nil || !k1.LastUsedAt.Equal(want) {
		t.Errorf("k1 last_used_at = %v, want %v", k1.LastUsedAt, want)
	}
	if want := mustTime(t, "2026-01-02T03:04:05Z"); k1.CreatedAt == nil || !k1.CreatedAt.Equal(want) {
		t.Errorf("k1 created_at = %v, want %v", k1.CreatedAt, want)
	}
	if k2.TotalRequests != nil || k2.IsActive != nil || k2.CreatedAt != nil || k2.LastUsedAt != nil || k2.Name != "" {
		t.Errorf("k2 nulls not read as unknown: %+v", k2)
	}
	if k2.Purpose != PurposeGoogleSheets || k3.Purpose != PurposeGoogleSheets {
		t.Errorf("purposes %q, %q, want %q", k2.Purpose, k3.Purpose, PurposeGoogleSheets)
	}
	if k3.TotalRequests == nil || *k3.TotalRequests != 7 {
		t.Errorf("k3 total = %v, want 7 from a numeric string", k3.TotalRequests)
	}
	if k3.LastUsedAt != nil {
		t.Errorf("k3 unparsable last_used_at = %v, want nil", k3.LastUsedAt)
	}
}

func TestDecodeKeyListCountMissing(t *testing.T) {
	t.Parallel()
	got, err := decodeKeyList([]byte(`{"keys": [{"id": "a"}, {"id": "b"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if got.Count != 2 || len(got.Keys) != 2 {
		t.Errorf("count=%d keys=%d, want 2, 2", got.Count, len(got.Keys))
	}
	empty, err := decodeKeyList([]byte(`{"count": null, "keys": null}`))
	if err != nil {
		t.Fatal(err)
	}
	if empty.Count != 0 || len(empty.Keys) != 0 || empty.Keys == nil {
		t.Errorf("null keys = %+v, want an empty non-nil list", empty)
	}
}

func TestDecodeUsageMergesPurposes(t *testing.T) {
	t.Parallel()
	body := []byte(`{"user_id": "u", "total_requests": 30, "total_api_keys": null,
		"requests_by_purpose": {"google sheets": 10, "google_sheets": 5, "Zapier": 15, "n8n": "x"},
		"api_keys_by_purpose": null, "last_used_at": "2026-02-01T10:00:00.5Z"}`)
	got, err := decodeUsage(body)
	if err != nil {
		t.Fatal(err)
	}
	if got.TotalRequests == nil || *got.TotalRequests != 30 || got.TotalAPIKeys != nil {
		t.Errorf("totals = %v, %v", got.TotalRequests, got.TotalAPIKeys)
	}
	want := map[string]int64{"google sheets": 15, "zapier": 15}
	if len(got.RequestsByPurpose) != len(want) {
		t.Errorf("requests_by_purpose = %v, want %v", got.RequestsByPurpose, want)
	}
	for k, v := range want {
		if got.RequestsByPurpose[k] != v {
			t.Errorf("requests_by_purpose[%q] = %d, want %d", k, got.RequestsByPurpose[k], v)
		}
	}
	if got.APIKeysByPurpose == nil || len(got.APIKeysByPurpose) != 0 {
		t.Errorf("api_keys_by_purpose = %v, want empty non-nil", got.APIKeysByPurpose)
	}
	if got.LastUsedAt == nil || got.LastUsedAt.Nanosecond() != 500_000_000 {
		t.Errorf("last_used_at = %v", got.LastUsedAt)
	}
}

func TestDecodeTaskPage(t *testing.T) {
	t.Parallel()
	body := []byte(`{"count": 9, "limit": 100, "offset": 200, "next": "ignored", "tasks": [
		{"id": "old", "user_id": "u", "webhook_url": null, "created_at": "2026-01-01T00:00:00Z",
		 "updated_at": "2026-01-01T00:05:00.25Z",
		 "metrics": {"total_email_addresses": 3,
		   "job_status": {"pending": 0, "processing": 0, "completed": 3, "failed": 0},
		   "verification_status": {"exists": 1, "not_exists": 1, "catchall": 1},
		   "progress": 1, "progress_percent": 100,
		   "last_verification_requested_at": "2026-01-01T00:00:01Z",
		   "last_verification_completed_at": "2026-01-01T00:04:59.999Z"}},
		{"id": "new", "created_at": "2026-03-01T00:00:00.000001Z", "source": "api_key",
		 "metrics": {"total_email_addresses": "4", "job_status": null, "verification_status": {},
		   "progress": null, "progress_percent": 50.5}},
		{"id": "nometrics", "created_at": "2026-03-01T00:00:00Z", "metrics": null},
		{"id": "badtime", "created_at": "March 1st"},
		{"id": "notime"},
		{"created_at": "2026-03-01T00:00:00Z"},
		"not an object"
	]}`)
	got, err := decodeTaskPage(body)
	if err != nil {
		t.Fatal(err)
	}
	if got.Count != 9 || got.Limit != 100 || got.Offset != 200 {
		t.Errorf("count/limit/offset = %d/%d/%d", got.Count, got.Limit, got.Offset)
	}
	if got.Dropped != 4 || len(got.Tasks) != 3 {
		t.Fatalf("dropped=%d tasks=%d, want 4, 3", got.Dropped, len(got.Tasks))
	}
	old, nw, nom := got.Tasks[0], got.Tasks[1], got.Tasks[2]
	if old.ID != "old" || old.UserID != "u" || old.WebhookURL != "" || old.Source != "" {
		t.Errorf("old = %+v", old)
	}
	if old.UpdatedAt == nil || old.UpdatedAt.Nanosecond() != 250_000_000 {
		t.Errorf("old updated_at = %v", old.UpdatedAt)
	}
	m := old.Metrics
	if m.TotalEmailAddresses == nil || *m.TotalEmailAddresses != 3 || m.JobStatus["completed"] != 3 ||
		m.VerificationStatus["exists"] != 1 || m.Progress == nil || *m.Progress != 1 ||
		m.LastVerificationCompletedAt == nil || m.LastVerificationRequestedAt == nil {
		t.Errorf("old metrics = %+v", m)
	}
	if nw.Source != "api_key" || nw.CreatedAt.Nanosecond() != 1000 {
		t.Errorf("new = %+v", nw)
	}
	if nw.Metrics.JobStatus != nil || nw.Metrics.VerificationStatus == nil || nw.Metrics.Progress != nil ||
		nw.Metrics.ProgressPercent == nil || *nw.Metrics.ProgressPercent != 50.5 || *nw.Metrics.TotalEmailAddresses != 4 {
		t.Errorf("new metrics = %+v", nw.Metrics)
	}
	if nom.Metrics.TotalEmailAddresses != nil || nom.Metrics.JobStatus != nil || nom.Metrics.VerificationStatus != nil {
		t.Errorf("null metrics = %+v, want all unknown", nom.Metrics)
	}
}

func TestDecodeErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body, want string
	}{
		{"empty", ``, "invalid JSON at offset 0: unexpected end of JSON input"},
		{"truncated", `{"count": 1, "keys": [`, "invalid JSON at offset 22: unexpected end of JSON input"},
		{"html", `<html>502</html>`, "invalid JSON at offset 1: invalid character '<'"},
		{"array", `[{"id": "a"}]`, "expected a JSON object, got array"},
		{"string", `"ok"`, "expected a JSON object, got string"},
		{"null", `null`, "expected a JSON object, got null"},
		{"keys not array", `{"keys": {"id": "a"}}`, `field "keys": expected an array, got object`},
		{"trailing garbage", `{"keys": []} x`, "invalid JSON at offset"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := decodeKeyList([]byte(tt.body))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestDecodeErrorBody(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body, msg string
		fields          map[string]string
	}{
		{"error", `{"error": "invalid token"}`, "invalid token", nil},
		{"fields", `{"error": "bad query", "fields": {"from": "not RFC3339", "n": 1}}`, "bad query",
			map[string]string{"from": "not RFC3339", "n": "1"}},
		{"message", `{"message": "slow down"}`, "slow down", nil},
		{"text", "  upstream connect error\n", "upstream connect error", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := decodeErrorBody([]byte(tt.body))
			if got.message != tt.msg || len(got.fields) != len(tt.fields) {
				t.Fatalf("got %+v, want %q %v", got, tt.msg, tt.fields)
			}
			for k, v := range tt.fields {
				if got.fields[k] != v {
					t.Errorf("fields[%q] = %q, want %q", k, got.fields[k], v)
				}
			}
		})
	}
}

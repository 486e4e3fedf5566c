package upstream

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestErrorString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  *Error
		want string
	}{
		{
			name: "auth",
			err:  &Error{Op: "list keys", Path: "/api/v1/api-keys", UserID: "u1", Status: 401, Kind: KindAuth, Message: "invalid token", Attempts: 1},
			want: "list keys for u1: GET /api/v1/api-keys: 401 Unauthorized: invalid token (auth, 1 attempt)",
		},
		{
			name: "network",
			err:  &Error{Op: "list tasks", Path: "/api/v1/tasks", UserID: "u1", Kind: KindRetryable, Err: errors.New("connection refused"), Attempts: 4},
			want: "list tasks for u1: GET /api/v1/tasks: connection refused (retryable, 4 attempts)",
		},
		{
			name: "fields and retry-after",
			err: &Error{Op: "list tasks", Path: "/api/v1/tasks", UserID: "u1", Status: 400, Kind: KindPermanent, Message: "bad\nquery",
				Fields: map[string]string{"to": "bad", "from": "bad"}, RetryAfter: 2 * time.Second, Attempts: 1},
			want: "list tasks for u1: GET /api/v1/tasks: 400 Bad Request: bad query [from: bad, to: bad] (permanent, 1 attempt, retry-after 2s)",
		},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("%s:\n got %q\nwant %q", tt.name, got, tt.want)
		}
	}
}

func TestKindOf(t *testing.T) {
	t.Parallel()
	inner := &Error{Kind: KindRateLimited, Err: context.Canceled}
	wrapped := fmt.Errorf("sync user: %w", inner)
	if got := KindOf(wrapped); got != KindRateLimited {
		t.Errorf("KindOf(wrapped) = %v, want rate_limited", got)
	}
	if !errors.Is(wrapped, context.Canceled) {
		t.Error("errors.Is does not reach the cause")
	}
	if got := KindOf(errors.New("other")); got != 0 {
		t.Errorf("KindOf(plain) = %v, want 0", got)
	}
	names := map[Kind]string{KindRetryable: "retryable", KindRateLimited: "rate_limited", KindAuth: "auth",
		KindPermanent: "permanent", KindDecode: "decode", 0: "kind(0)"}
	for k, want := range names {
		if k.String() != want {
			t.Errorf("Kind(%d).String() = %q, want %q", int(k), k.String(), want)
		}
	}
}

func TestKindOfStatus(t *testing.T) {
	t.Parallel()
	want := map[int]Kind{400: KindPermanent, 401: KindAuth, 403: KindAuth, 404: KindPermanent, 408: KindRetryable,
		409: KindPermanent, 429: KindRateLimited, 500: KindRetryable, 502: KindRetryable, 503: KindRetryable}
	for status, k := range want {
		if got := kindOfStatus(status); got != k {
			t.Errorf("kindOfStatus(%d) = %v, want %v", status, got, k)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"3", 3 * time.Second},
		{" 0 ", 0},
		{"-5", 0},
		{"soon", 0},
		{"Thu, 01 Jan 2026 12:00:07 GMT", 7 * time.Second},
		{"Thu, 01 Jan 2026 11:00:00 GMT", 0},
		{"99999999999", 24 * time.Hour},
		{"86400", 24 * time.Hour},
		{"Fri, 31 Dec 9999 23:59:59 GMT", 24 * time.Hour},
		{"Sat, 02 Jan 2026 18:00:00 GMT", 24 * time.Hour},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.in, now); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

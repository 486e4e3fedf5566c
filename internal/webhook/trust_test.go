package webhook

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

type users map[string]bool

func (u users) HasUser(_ context.Context, user string) (bool, error) {
	if user == "err" {
		return false, errors.New("database down")
	}
	return u[user], nil
}

func post(t *testing.T, url, secret, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url+Path, strings.NewReader(body))
	if secret != "" {
		req.Header.Set("X-Webhook-Signature", sign(secret, body))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Finding 5: a delivery already acted on (same user, task and stats) is acknowledged without a
// trigger, however often it is replayed; the same task in a new state, or a delivery that was
// dropped, still triggers.
func TestDeliveryActedOnOnce(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	core, logs := observer.New(zap.DebugLevel)
	h := New("s3cret", rec, nil, zap.New(core))
	srv := httptest.NewServer(h)
	defer srv.Close()
	for i := range 100 {
		code, body := post(t, srv.URL, "s3cret", completion)
		want := "duplicate"
		if i == 0 {
			want = "queued"
		}
		if code != http.StatusAccepted || !strings.Contains(body, want) {
			t.Fatalf("delivery %d: %d %q, want 202 %s", i, code, body, want)
		}
	}
	// Re-encoded, the same delivery is still the same.
	if _, body := post(t, srv.URL, "s3cret", strings.ReplaceAll(completion, `"total":3,`, `"total": 3, `)); !strings.Contains(body, "duplicate") {
		t.Fatalf("a re-encoded replay: %q", body)
	}
	if len(rec.users) != 1 {
		t.Fatalf("100 replays triggered %d syncs, want 1", len(rec.users))
	}
	progressed := strings.Replace(completion, `"completed":3`, `"completed":2`, 1)
	if _, body := post(t, srv.URL, "s3cret", progressed); !strings.Contains(body, "queued") || len(rec.users) != 2 {
		t.Fatalf("the task in another state: %q, %d triggers", body, len(rec.users))
	}
	rec.full = true
	other := strings.Replace(completion, `"t1"`, `"t2"`, 1)
	if _, body := post(t, srv.URL, "s3cret", other); !strings.Contains(body, "dropped") {
		t.Fatalf("queue full: %q", body)
	}
	rec.full = false
	if _, body := post(t, srv.URL, "s3cret", other); !strings.Contains(body, "queued") {
		t.Fatalf("a dropped delivery was remembered as acted on: %q", body)
	}
	h.duplicates.flush()
	checkAggregated(t, logs, "webhook.duplicate", 100)
}

// checkAggregated asserts that the lines named event count want deliveries in all, in a few lines.
func checkAggregated(t *testing.T, logs *observer.ObservedLogs, event string, want int) {
	t.Helper()
	lines := logs.FilterMessage(event).All()
	n := 0
	for _, l := range lines {
		n += int(l.ContextMap()["count"].(int64))
	}
	if n != want || len(lines) > 3 {
		t.Fatalf("%s: %d deliveries counted in %d lines, want %d in a few", event, n, len(lines), want)
	}
}

// Finding 5: a delivery for a user not in profiles is rejected (404), triggers nothing and is
// counted with the other rejections rather than logged on its own.
func TestDeliveryForUnknownUser(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	core, logs := observer.New(zap.DebugLevel)
	h := New("", rec, users{strings.ToLower(user): true}, zap.New(core))
	srv := httptest.NewServer(h)
	defer srv.Close()
	stranger := strings.Replace(completion, user, "6f1d2c3b-0000-4000-8000-0000000000ff", 1)
	for range 50 {
		if code, body := post(t, srv.URL, "", stranger); code != http.StatusNotFound || !strings.Contains(body, "unknown user") {
			t.Fatalf("unknown user: %d %q", code, body)
		}
	}
	if code, body := post(t, srv.URL, "", completion); code != http.StatusAccepted || !strings.Contains(body, "queued") {
		t.Fatalf("known user: %d %q", code, body)
	}
	if len(rec.users) != 1 {
		t.Fatalf("triggered %v, want only the known user", rec.users)
	}
	h.rejected.flush()
	checkAggregated(t, logs, "webhook.rejected", 50)
}

// Finding 5: the 64 KiB cap applies before the signature is checked, so even a correctly
// signed large body is refused unread past the cap.
func TestBodyCap(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	srv := httptest.NewServer(New("s3cret", rec, nil, nil))
	defer srv.Close()
	pad := strings.Repeat(" ", MaxBodyDefault)
	big := strings.Replace(completion, `"jobs":[]`, `"jobs":[`+pad+`]`, 1)
	if code, body := post(t, srv.URL, "s3cret", big); code != http.StatusRequestEntityTooLarge || !strings.Contains(body, "64 KiB") {
		t.Fatalf("a signed body over 64 KiB: %d %q", code, body)
	}
	fits := strings.Replace(completion, `"jobs":[]`, `"jobs":[`+pad[:MaxBodyDefault-len(completion)]+`]`, 1)
	if code, body := post(t, srv.URL, "s3cret", fits); code != http.StatusAccepted || !strings.Contains(body, "queued") {
		t.Fatalf("a body of exactly 64 KiB: %d %q", code, body)
	}
}

// LimitListener serves at most n connections: the next Accept waits until one closes.
func TestLimitListener(t *testing.T) {
	t.Parallel()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := LimitListener(raw, 2)
	defer ln.Close()
	accepted := make(chan net.Conn, 3)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	for range 3 {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	first, second := <-accepted, <-accepted
	select {
	case c := <-accepted:
		t.Fatalf("a third connection was served while two were open: %v", c.RemoteAddr())
	default:
	}
	// The third client is queued in the kernel, not refused: closing one frees its slot.
	first.Close()
	third := <-accepted
	buf := make([]byte, 1)
	if _, err := io.ReadFull(third, buf); err != nil || !bytes.Equal(buf, []byte("x")) {
		t.Fatalf("the third connection: %v %q", err, buf)
	}
	second.Close()
	third.Close()
	ln.Close()
	for range accepted {
	}
}

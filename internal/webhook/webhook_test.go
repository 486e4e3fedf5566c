package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

type recorder struct {
	mu    sync.Mutex
	users []string
	full  bool
}

func (r *recorder) Trigger(u string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.full {
		return false
	}
	r.users = append(r.users, u)
	return true
}

func sign(secret, body string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(body))
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

const (
	user       = "6F1D2C3B-0000-4000-8000-000000000001"
	completion = `{"event_type":"email_verification_completed","task_id":"t1","data":{"user_id":"` + user + `","stats":{"total":3,"completed":3,"failed":0},"jobs":[]}}`
	perEmail   = `{"event_type":"email_verification_completed","task_id":"t1","data":{"user_id":"` + user + `","job":{"email":"a@b.c"}}}`
)

func TestHandler(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		secret     string
		method     string
		body       string
		sig        string
		wantStatus int
		wantBody   string
		triggered  bool
		full       bool
	}{
		{"signed completion", "s3cret", "POST", completion, sign("s3cret", completion), 202, "queued", true, false},
		{"unsigned accepted without a secret", "", "POST", completion, "", 202, "queued", true, false},
		{"wrong signature", "s3cret", "POST", completion, sign("other", completion), 401, "X-Webhook-Signature", false, false},
		{"missing signature", "s3cret", "POST", completion, "", 401, "X-Webhook-Signature", false, false},
		{"signature without prefix", "s3cret", "POST", completion, strings.TrimPrefix(sign("s3cret", completion), "sha256="), 401, "X-Webhook-Signature", false, false},
		{"per-email callback is not a completion", "", "POST", perEmail, "", 202, "ignored", false, false},
		{"other event", "", "POST", `{"event_type":"task_created","data":{"user_id":"` + user + `","stats":{}}}`, "", 202, "ignored", false, false},
		{"not JSON", "", "POST", `{"event_type":`, "", 400, "not the webhook's JSON", false, false},
		{"user id not a uuid", "", "POST", strings.Replace(completion, user, "nope", 1), "", 400, "not a UUID", false, false},
		{"GET", "", "GET", "", "", 405, "use POST", false, false},
		{"queue full", "", "POST", completion, "", 202, "dropped", false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{full: c.full}
			srv := httptest.NewServer(New(c.secret, rec, nil, nil))
			defer srv.Close()
			req, _ := http.NewRequest(c.method, srv.URL+Path, strings.NewReader(c.body))
			if c.sig != "" {
				req.Header.Set("X-Webhook-Signature", c.sig)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			buf := new(strings.Builder)
			_, _ = io.Copy(buf, resp.Body)
			if resp.StatusCode != c.wantStatus || !strings.Contains(buf.String(), c.wantBody) {
				t.Fatalf("status %d body %q; want %d containing %q", resp.StatusCode, buf, c.wantStatus, c.wantBody)
			}
			if got := len(rec.users) == 1 && rec.users[0] == strings.ToLower(user); got != c.triggered {
				t.Fatalf("triggered %v (%v), want %v", got, rec.users, c.triggered)
			}
		})
	}
}

func TestQueueCoalescesAndBounds(t *testing.T) {
	t.Parallel()
	q := NewQueue(2)
	first, again, other := q.Trigger("a"), q.Trigger("a"), q.Trigger("b") // "a" twice: coalesced
	if !first || !again || !other {
		t.Fatal("triggers refused below the bound")
	}
	if q.Trigger("c") {
		t.Fatal("a third distinct user was queued past the bound of 2")
	}
	ctx, cancel := context.WithCancel(context.Background())
	var got []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		q.Run(ctx, func(_ context.Context, u string) {
			got = append(got, u)
			if len(got) == 2 {
				cancel()
			}
		})
	}()
	<-done
	if strings.Join(got, ",") != "a,b" {
		t.Fatalf("synced %v, want a then b, each once", got)
	}
}

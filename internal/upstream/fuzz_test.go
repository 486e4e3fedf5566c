package upstream

import (
	"testing"
	"unicode/utf8"

	"github.com/usage-sync/usage-sync/internal/safetext"
)

// The decoders read bytes from an upstream the worker does not trust. Whatever the bytes, they
// must not panic, and what they return must be safe to store and charge: usable ids, clean
// text, counts the database's integer columns hold. The seed corpus is testdata/fuzz/<name>;
// `go test` runs it, `go test -fuzz <name>` explores from it.

func clean(t *testing.T, what, s string, max int) {
	t.Helper()
	if safetext.Clean(s, max) != s || !utf8.ValidString(s) {
		t.Fatalf("%s %q is not clean text", what, s)
	}
}

func checkID(t *testing.T, id string) {
	t.Helper()
	if got, ok := safetext.ID(id); !ok || got != id {
		t.Fatalf("id %q passed the decoder but is not a usable id", id)
	}
}

func inBounds(t *testing.T, what string, n int64) {
	t.Helper()
	if n > maxCount || n < -maxCount {
		t.Fatalf("%s %d passed the decoder", what, n)
	}
}

func FuzzDecodeKeyList(f *testing.F) {
	f.Add([]byte(`{"count":1,"keys":[{"id":"k1","name":"a","purpose":"google_sheets","total_requests":3}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		list, err := decodeKeyList(body)
		if err != nil {
			return
		}
		if list.Dropped != list.Drops.Total() {
			t.Fatalf("Dropped %d, reasons %v", list.Dropped, list.Drops)
		}
		for _, k := range list.Keys {
			checkID(t, k.ID)
			clean(t, "name", k.Name, maxName)
			if utf8.ValidString(k.Purpose) == false || safetext.Clean(k.Purpose, maxName) != k.Purpose {
				t.Fatalf("purpose %q", k.Purpose)
			}
			if k.TotalRequests != nil {
				inBounds(t, "total_requests", *k.TotalRequests)
			}
		}
	})
}

func FuzzDecodeUsage(f *testing.F) {
	f.Add([]byte(`{"user_id":"u","total_requests":5,"requests_by_purpose":{"zapier":2,"google sheets":3}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := decodeUsage(body)
		if err != nil {
			return
		}
		for p, n := range m.RequestsByPurpose {
			if safetext.Clean(p, maxName) != p {
				t.Fatalf("purpose %q is not clean", p)
			}
			inBounds(t, "requests_by_purpose", n)
		}
		for _, n := range m.APIKeysByPurpose {
			inBounds(t, "api_keys_by_purpose", n)
		}
	})
}

func checkTask(t *testing.T, tk Task) {
	t.Helper()
	checkID(t, tk.ID)
	clean(t, "webhook_url", tk.WebhookURL, maxURL)
	clean(t, "source", tk.Source, maxName)
	if tk.CreatedAt == nil {
		t.Fatal("a task without created_at passed the decoder")
	}
	// Every column and billable count internal/usage derives is at most the result total.
	for name, n := range tk.Metrics.Results() {
		if n < 0 || n > maxCount {
			t.Fatalf("task %s: result %q count %d", tk.ID, name, n)
		}
	}
	if n := tk.Metrics.ResultTotal(); n < 0 || n > maxCount {
		t.Fatalf("task %s: derived result total %d", tk.ID, n)
	}
}

func FuzzDecodeTaskPage(f *testing.F) {
	f.Add([]byte(`{"count":1,"tasks":[{"id":"t1","user_id":"u1","created_at":"2026-11-30T10:00:00Z","metrics":{"total_email_addresses":3,"verification_status":{"valid":2,"role_based":1}}}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		page, err := decodeTaskPage(body)
		if err == nil {
			if page.Dropped != page.Drops.Total() {
				t.Fatalf("Dropped %d, reasons %v", page.Dropped, page.Drops)
			}
			for _, tk := range page.Tasks {
				checkTask(t, tk)
			}
			if own, err := ownTasks(page, "u1"); err == nil {
				for _, tk := range own.Tasks {
					if tk.UserID != "" && !sameUser(tk.UserID, "u1") {
						t.Fatalf("ownTasks kept a task of %q", tk.UserID)
					}
				}
			}
		}
	})
}

func FuzzDecodeErrorBody(f *testing.F) {
	f.Add([]byte(`{"error":"bad request \u0000 here","fields":{"from":"must be RFC 3339"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		msg, fields := kept(decodeErrorBody(body), "tok")
		e := &Error{Op: "list keys", Path: "/api/v1/api-keys", Status: 400, Kind: KindPermanent, Message: msg, Fields: fields}
		if len(fields) > maxFields {
			t.Fatalf("%d fields kept", len(fields))
		}
		s := e.Error()
		if !utf8.ValidString(s) {
			t.Fatalf("error text is not UTF-8: %q", s)
		}
		for _, r := range s {
			if r == 0 || r == 0x1b || r == 0x9b {
				t.Fatalf("error text carries %U: %q", r, s)
			}
		}
	})
}

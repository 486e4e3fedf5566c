package webhook

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// A flood of forged deliveries costs a few log lines with counts, not one line per request,
// and no rejection goes uncounted.
func TestRejectionFloodIsAggregated(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.DebugLevel)
	h := New("secret", &recorder{}, nil, zap.New(core))
	// A clock that never moves and an interval no run lasts: every rejection falls in the
	// first interval, whatever the machine's speed, and only the explicit flush ends it.
	frozen := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	h.rejected.clock = func() time.Time { return frozen }
	h.rejected.every = time.Hour
	srv := httptest.NewServer(h)
	defer srv.Close()

	const forged = 500
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < forged; i += 4 {
				resp, err := http.Post(srv.URL, "application/json", strings.NewReader(completion))
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("forged delivery: %d", resp.StatusCode)
				}
			}
		}()
	}
	wg.Wait()
	h.rejected.flush()

	lines := logs.FilterMessage("webhook.rejected").All()
	// One line at once for the first, one summary for the interval.
	if len(lines) != 2 {
		t.Fatalf("%d forged deliveries wrote %d log lines, want 2", forged, len(lines))
	}
	total := int64(0)
	for _, l := range lines {
		total += l.ContextMap()["count"].(int64)
	}
	if total != forged {
		t.Fatalf("log lines count %d rejections, want %d: %v", total, forged, lines)
	}
	last := lines[len(lines)-1].ContextMap()
	if last["401 missing or wrong X-Webhook-Signature"] != int64(forged-1) {
		t.Fatalf("summary line should count the rejections by reason: %v", last)
	}
}

package syncer_test

import (
	"testing"
	"time"

	"github.com/usage-sync/usage-sync/internal/hostile"
	"github.com/usage-sync/usage-sync/internal/syncer"
	"github.com/usage-sync/usage-sync/internal/upstream"
)

// Finding 4: a Retry-After is advice with a ceiling. One 429 saying "a day" (delta-seconds) or
// "the year 9999" (an HTTP date) moves the user's next attempt no further than
// FAILURE_BACKOFF_MAX from now; before, it parked the user 24 h and about 292 years.
func TestRetryAfterCeiling(t *testing.T) {
	t.Parallel()
	e, h, a, b, c := setupHostile(t)
	h.On(hostile.Always(hostile.For(a, "/api-keys"), hostile.Reply{Status: 429, Header: map[string]string{"Retry-After": "86400"},
		Body: []byte(`{"error":"slow down"}`)}))
	h.On(hostile.Always(hostile.For(b, "/api-keys"), hostile.Reply{Status: 429, Header: map[string]string{"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"},
		Body: []byte(`{"error":"slow down"}`)}))
	const backoffMax = 10 * time.Minute
	// A retry budget shorter than the client's own Retry-After cap: the call gives up at once
	// and hands the Retry-After to the syncer, which is what is under test.
	cl := e.client(func(c *upstream.Config) { c.MaxElapsed = 50 * time.Millisecond })
	s := syncer.New(e.st, cl, e.log, withOpts(e.opts, func(o *syncer.Options) {
		o.FailureBackoffBase = time.Minute
		o.FailureBackoffMax = backoffMax
	}))
	now := e.clock.Now()
	e.cycle(s, syncer.CycleOptions{All: true})
	for _, u := range []string{a, b} {
		if v := e.view(u); v.Status != "error" || v.Kind != "rate_limited" {
			t.Fatalf("%s: %+v, want a rate-limited failure", u, v)
		}
		if n := e.q(`select count(*) from sync_state where user_id = $1 and next_attempt_at <= $2`, u, now.Add(backoffMax)); n != 1 {
			var next time.Time
			_ = e.db.QueryRow(t.Context(), `select next_attempt_at from sync_state where user_id = $1`, u).Scan(&next)
			t.Fatalf("%s: next attempt at %s, past now + FAILURE_BACKOFF_MAX (%s)", u, next, now.Add(backoffMax))
		}
	}
	if v := e.view(c); v.Status != "ok" {
		t.Fatalf("the control user: %+v", v)
	}
	// The cap decides the next cycle: once FAILURE_BACKOFF_MAX has passed, both are taken again.
	e.clock.Add(backoffMax + time.Second)
	if sum := e.cycle(s, syncer.CycleOptions{}); sum.Due < 2 {
		t.Fatalf("after FAILURE_BACKOFF_MAX the throttled users were not due again: %+v", sum)
	}
}

func withOpts(o syncer.Options, mod func(*syncer.Options)) syncer.Options {
	mod(&o)
	return o
}

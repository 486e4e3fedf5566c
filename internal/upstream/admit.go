package upstream

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/time/rate"

	"github.com/usage-sync/usage-sync/internal/clock"
)

// admission is what every attempt passes before it is sent (docs/design.md, "What a cycle may
// cost": "The upstream sees a bounded, smooth load"): a slot among Config.MaxInFlight, then a token of Config.RateLimit. A
// slot is taken first and the token second, so tokens are never spent by attempts that then
// queue for a slot and go out together later: the pacing holds at the moment of sending.
type admission struct {
	slots   chan struct{} // nil: no bound on requests in flight
	limiter *rate.Limiter // nil: no rate limit
	clock   clock.Clock
}

// rateBurst is the limiter's bucket: one token, so attempts are spaced 1/RateLimit apart rather
// than let through in bursts that a vendor's own limiter would refuse.
const rateBurst = 1

func newAdmission(maxInFlight int, ratePerSecond float64, clk clock.Clock) (*admission, error) {
	a := &admission{clock: clk}
	switch {
	case maxInFlight < 0:
		return nil, fmt.Errorf("upstream requests in flight bound %d is negative", maxInFlight)
	case maxInFlight > 0:
		a.slots = make(chan struct{}, maxInFlight)
	}
	switch {
	case ratePerSecond < 0:
		return nil, fmt.Errorf("upstream rate limit %g is negative", ratePerSecond)
	case ratePerSecond > 0:
		a.limiter = rate.NewLimiter(rate.Limit(ratePerSecond), rateBurst)
	}
	return a, nil
}

// admit waits for a slot and then for the limiter, honouring ctx. It returns the func that
// gives the slot back (called once the attempt's response is read, before any retry's backoff,
// so a sleeping retry holds no slot) and how long the limiter made the attempt wait.
func (a *admission) admit(ctx context.Context) (release func(), waited time.Duration, err error) {
	release = func() {}
	if a.slots != nil {
		select {
		case a.slots <- struct{}{}:
		case <-ctx.Done():
			return release, 0, fmt.Errorf("wait for an upstream request slot: %w", context.Cause(ctx))
		}
		release = func() { <-a.slots }
	}
	if a.limiter == nil {
		return release, 0, nil
	}
	start := a.clock.Now()
	r := a.limiter.ReserveN(start, 1)
	delay := r.DelayFrom(start)
	// The deadline is on the wall clock, the limiter on the client's: compare what is left.
	if deadline, ok := ctx.Deadline(); ok && delay > time.Until(deadline) {
		r.CancelAt(start)
		release()
		return func() {}, 0, fmt.Errorf("wait for the upstream rate limit: %s would pass the call's deadline", delay.Round(time.Millisecond))
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			r.CancelAt(a.clock.Now())
			release()
			return func() {}, 0, fmt.Errorf("wait for the upstream rate limit: %w", context.Cause(ctx))
		}
	}
	return release, delay, nil
}

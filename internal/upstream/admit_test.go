package upstream

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usage-sync/usage-sync/internal/simulator"
)

// recordingObserver keeps what the client reports about admission.
type recordingObserver struct {
	mu                sync.Mutex
	inFlight, maxSeen int
	waits             []time.Duration
}

func (o *recordingObserver) Request(string, string) {}
func (o *recordingObserver) Retry(string)           {}
func (o *recordingObserver) InFlight(delta int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.inFlight += delta
	o.maxSeen = max(o.maxSeen, o.inFlight)
}
func (o *recordingObserver) RateLimitWait(d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.waits = append(o.waits, d)
}

// At most MaxInFlight attempts are in flight at once, retries of 429s and 500s included, as the
// server counts them; and the bound is reached, so it is what held the rest back.
func TestMaxInFlightBoundsAttempts(t *testing.T) {
	t.Parallel()
	const limit, callers, calls = 4, 24, 4
	sim := simulator.New(simulator.Config{Seed: 3, Users: 2, KeysPerUser: 1, TasksPerUser: -1, AdminToken: testAdmin,
		Now: func() time.Time { return simNow }, RateLimitEvery: 5, ErrorRate: 0.2, RetryAfter: time.Second})
	f := fixtureOf(t, sim)
	// The first requests are held until limit of them are in flight at once: the bound is
	// reached, and everything else queues behind it meanwhile.
	var once sync.Once
	full, arrived := make(chan struct{}), make(chan struct{}, limit)
	sim.OnRequest(func(string, string, url.Values) {
		select {
		case arrived <- struct{}{}:
			if len(arrived) == limit {
				once.Do(func() { close(full) })
			}
			<-full
		default:
		}
	})
	cfg := f.fastConfig()
	cfg.MaxInFlight, cfg.MaxRetryAfter = limit, time.Millisecond
	ob := &recordingObserver{}
	cfg.Observer = ob
	c := f.client(t, cfg)
	var wg sync.WaitGroup
	errs := make(chan error, callers*calls)
	for i := range callers {
		wg.Go(func() {
			for range calls {
				if _, err := c.ListKeys(context.Background(), sim.Users()[i%2], nil, nil); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("call failed: %v", err)
	}
	now, peak := sim.InFlight()
	if peak != limit || now != 0 {
		t.Fatalf("the server saw %d requests in flight at most (%d now), want exactly the bound %d", peak, now, limit)
	}
	if retried := sim.Hits("/api-keys") - callers*calls; retried <= 0 {
		t.Fatalf("no attempt was retried: the test does not exercise retries")
	}
	if ob.maxSeen != limit || ob.inFlight != 0 {
		t.Fatalf("observer saw %d in flight at most, %d at the end; want %d and 0", ob.maxSeen, ob.inFlight, limit)
	}
	if len(ob.waits) != 0 {
		t.Fatalf("RateLimitWait reported %d times without a rate limit", len(ob.waits))
	}
}

// A retry waiting out its backoff holds no slot: with one slot, another call goes out while a
// 429's Retry-After is waited out.
func TestRetryBackoffHoldsNoSlot(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	other := f.sim.Users()[1]
	f.sim.SetFault(f.user, simulator.Fault{Status: http.StatusTooManyRequests, Times: 1, RetryAfter: time.Second})
	var mu sync.Mutex
	var order []string
	firstAnswered := make(chan struct{})
	f.sim.OnRequest(func(user, _ string, _ url.Values) {
		mu.Lock()
		defer mu.Unlock()
		order = append(order, user)
	})
	cfg := f.fastConfig()
	cfg.MaxInFlight, cfg.MaxRetryAfter = 1, time.Second
	cfg.Observer = &signalObserver{first: firstAnswered}
	c := f.client(t, cfg)
	done := make(chan error, 1)
	go func() {
		_, err := c.ListKeys(context.Background(), f.user, nil, nil)
		done <- err
	}()
	<-firstAnswered // the 429 is in: the call now waits about 1 s before its retry
	if _, err := c.ListKeys(context.Background(), other, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{f.user, other, f.user}; !slices.Equal(order, want) {
		t.Fatalf("requests came from %v, want %v: the retry's wait held the only slot", order, want)
	}
}

// signalObserver closes first on the first attempt's outcome.
type signalObserver struct {
	once  sync.Once
	first chan struct{}
}

func (o *signalObserver) Request(string, string)      { o.once.Do(func() { close(o.first) }) }
func (o *signalObserver) Retry(string)                {}
func (o *signalObserver) InFlight(int)                {}
func (o *signalObserver) RateLimitWait(time.Duration) {}

// The limiter paces every attempt, retries included: on a clock that does not move, each
// reservation waits one interval (1/RateLimit) more than the one before, so the waits are
// exactly 0, 1, 2, … intervals, one per attempt the server saw.
func TestRateLimitPacesEveryAttempt(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.sim.SetFault(f.user, simulator.Fault{Status: http.StatusInternalServerError, Times: 2})
	cfg := f.fastConfig()
	cfg.RateLimit = 1000 // one token a millisecond
	ob := &recordingObserver{}
	cfg.Observer = ob
	c := f.client(t, cfg)
	frozen := simNow
	c.clock = func() time.Time { return frozen }
	for range 5 {
		if _, err := c.ListKeys(context.Background(), f.user, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	attempts := f.sim.Hits("/api-keys")
	if attempts != 7 {
		t.Fatalf("server saw %d attempts, want 5 calls + 2 retries", attempts)
	}
	want := make([]time.Duration, attempts)
	for i := range want {
		want[i] = time.Duration(i) * time.Millisecond
	}
	if !slices.Equal(ob.waits, want) {
		t.Fatalf("limiter waits %v, want %v: one token per attempt, retries included", ob.waits, want)
	}
}

// Waiting for the limiter honours the context: a wait that would pass the call's deadline is
// refused at once, a cancelled context ends the wait, and neither sends anything.
func TestRateLimitHonoursContext(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg := f.fastConfig()
	cfg.RateLimit = 0.001 // one token per 1000 s
	c := f.client(t, cfg)
	frozen := simNow
	c.clock = func() time.Time { return frozen }
	if _, err := c.ListKeys(context.Background(), f.user, nil, nil); err != nil {
		t.Fatal(err) // the bucket's one token
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := c.ListKeys(ctx, f.user, nil, nil)
	if e := asError(t, err); !strings.Contains(err.Error(), "would pass the call's deadline") || e.Kind != KindRetryable || e.Attempts != 0 {
		t.Fatalf("err = %v (kind %v, %d attempts), want a retryable refusal naming the deadline, nothing sent", err, e.Kind, e.Attempts)
	}

	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if _, err := c.ListKeys(ctx, f.user, nil, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if hits := f.sim.Hits("/api-keys"); hits != 1 {
		t.Fatalf("server saw %d requests, want only the first", hits)
	}
}

func TestAdmissionRefusesNegatives(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, cfg := range []Config{{MaxInFlight: -1}, {RateLimit: -1}} {
		base := f.fastConfig()
		base.MaxInFlight, base.RateLimit = cfg.MaxInFlight, cfg.RateLimit
		if _, err := New(base); err == nil || !strings.Contains(err.Error(), "negative") {
			t.Errorf("New(%+v) = %v, want an error saying it is negative", cfg, err)
		}
	}
}

package syncer_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/usage-sync/usage-sync/internal/hostile"
	"github.com/usage-sync/usage-sync/internal/simulator"
	"github.com/usage-sync/usage-sync/internal/syncer"
	"github.com/usage-sync/usage-sync/internal/upstream"
	"github.com/usage-sync/usage-sync/internal/webhook"
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
	s := e.newSyncer(e.st, cl, withOpts(e.opts, func(o *syncer.Options) {
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

// flood is a webhook listener wired as the daemon wires it (internal/cli): handler, queue, and
// RunTriggered on the test's fake clock, behind real HTTP.
type flood struct {
	e      *env
	s      *syncer.Syncer
	url    string
	secret string
	synced map[string]int // user → syncs finished
	done   chan string    // each finished user sync, in order
}

func (e *env) webhookFlood(t *testing.T, minInterval time.Duration) *flood {
	t.Helper()
	f := &flood{e: e, secret: "hook-s3cret", synced: map[string]int{}, done: make(chan string, 1000)}
	f.s = e.syncer(func(o *syncer.Options) { o.TriggerMinInterval = minInterval })
	f.s.SetHooks(&syncer.Hooks{AfterFinish: func(u string) { f.done <- u }})
	q := webhook.NewQueue(100)
	srv := httptest.NewServer(webhook.New(f.secret, q, e.st, e.log))
	t.Cleanup(srv.Close)
	f.url = srv.URL + webhook.Path
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		q.Run(ctx, func(ctx context.Context, u string) {
			if _, _, err := f.s.RunTriggered(ctx, syncer.Trigger{UserID: u, Kind: "webhook"}); err != nil {
				t.Errorf("webhook sync of %s: %v", u, err)
			}
		})
	}()
	t.Cleanup(func() { cancel(); <-ran })
	return f
}

func (f *flood) post(t *testing.T, user, taskID string) string {
	t.Helper()
	body := `{"event_type":"email_verification_completed","task_id":"` + taskID + `","data":{"user_id":"` + user + `","stats":{"total":3,"completed":3,"failed":0}}}`
	mac := hmac.New(sha256.New, []byte(f.secret))
	mac.Write([]byte(body))
	req, _ := http.NewRequest("POST", f.url, strings.NewReader(body))
	req.Header.Set("X-Webhook-Signature", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("webhook answered %d %s", resp.StatusCode, b)
	}
	return string(b)
}

// drain waits until the queue has worked through everything posted so far: the queue is FIFO,
// so once a sentinel user posted last has synced, every earlier trigger has run.
func (f *flood) drain(t *testing.T, sentinel string) {
	t.Helper()
	f.post(t, sentinel, "sentinel-"+time.Now().Format(time.RFC3339Nano))
	for u := range f.done {
		f.synced[u]++
		if u == sentinel {
			return
		}
	}
}

// Finding 5: one signed delivery replayed 1,000 times over 10 s (of the fake clock) syncs its
// user at most 1 + 10 s / TRIGGER_MIN_INTERVAL times; before, 1,295 replays gave 1,282 syncs.
// With the default interval (30 s) that is once; a replayed delivery is also acknowledged as a
// duplicate without reaching the queue at all.
func TestWebhookReplayFlood(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: simulator.Config{Seed: 13, Users: 2, KeysPerUser: 1, TasksPerUser: 1}})
	users := e.sim.Users()
	a, sentinel := users[0], users[1]
	calls := e.countRequests()
	f := e.webhookFlood(t, syncer.TriggerMinIntervalDefault)
	const replays, over = 1000, 10 * time.Second
	duplicates := 0
	for range replays {
		e.clock.Add(over / replays)
		if strings.Contains(f.post(t, a, "task-1"), "duplicate") {
			duplicates++
		}
	}
	f.drain(t, sentinel)
	bound := 1 + int(over/syncer.TriggerMinIntervalDefault)
	if f.synced[a] < 1 || f.synced[a] > bound {
		t.Fatalf("%d replays over %s synced the user %d times, want 1..%d", replays, over, f.synced[a], bound)
	}
	if duplicates != replays-1 {
		t.Fatalf("%d of %d replays acknowledged as duplicates, want all but the first", duplicates, replays)
	}
	t.Logf("%d replays over %s: %d sync(s), %d upstream calls for the user", replays, over, f.synced[a], len(calls.take(a)))
}

// Finding 5: distinct signed deliveries (a busy user's tasks, or a sender gone wrong) cannot
// sync one user more than once per TRIGGER_MIN_INTERVAL either: 1,000 over 10 s with a 2 s
// interval give at most 6 syncs. The interval is kept in sync_state, so a second replica's
// trigger is refused as well.
func TestWebhookDistinctDeliveryFlood(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: simulator.Config{Seed: 14, Users: 2, KeysPerUser: 1, TasksPerUser: 1}})
	users := e.sim.Users()
	a, sentinel := users[0], users[1]
	const interval, deliveries, over = 2 * time.Second, 1000, 10 * time.Second
	f := e.webhookFlood(t, interval)
	for i := range deliveries {
		e.clock.Add(over / deliveries)
		f.post(t, a, "task-"+strconv.Itoa(i))
	}
	f.drain(t, sentinel)
	bound := 1 + int(over/interval)
	if f.synced[a] < 1 || f.synced[a] > bound {
		t.Fatalf("%d deliveries over %s synced the user %d times, want 1..%d", deliveries, over, f.synced[a], bound)
	}
	// Two replicas: once the interval has passed one takes the user, and the other's trigger
	// right after is refused, request or not: the interval lives in sync_state.
	e.clock.Add(interval)
	other := e.syncer(func(o *syncer.Options) { o.TriggerMinInterval = interval; o.WorkerID = "replica-2" })
	if _, taken, err := f.s.RunTriggered(context.Background(), syncer.Trigger{UserID: a, Kind: "webhook"}); err != nil || !taken {
		t.Fatalf("the first replica's trigger after the interval: taken %v, %v", taken, err)
	}
	e.clock.Add(time.Millisecond)
	if _, taken, err := other.RunTriggered(context.Background(), syncer.Trigger{UserID: a, Kind: "request", SkipBackoff: true}); err != nil || taken {
		t.Fatalf("a second replica's trigger within the interval: taken %v, %v", taken, err)
	}
	t.Logf("%d deliveries over %s at TRIGGER_MIN_INTERVAL=%s: %d syncs", deliveries, over, interval, f.synced[a])
}

// Finding 5: a webhook-triggered sync respects the user's failure backoff; request_sync() (the
// dashboard's retry button) may skip it, but not TRIGGER_MIN_INTERVAL.
func TestTriggerBackoffAndInterval(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: simulator.Config{Seed: 15, Users: 1, KeysPerUser: 1, TasksPerUser: 1}})
	u := e.sim.Users()[0]
	s := e.syncer(func(o *syncer.Options) { o.TriggerMinInterval = time.Minute; o.FailureBackoffBase = 10 * time.Minute })
	e.sim.SetFault(u, simulator.Fault{Status: 401}) // not retried: the test waits on nothing
	e.cycle(s, syncer.CycleOptions{All: true})
	if v := e.syncState(u); v.Status != "error" || !v.NextAttemptInFuture {
		t.Fatalf("the user should be backing off: %+v", v)
	}
	e.sim.ClearFault(u)
	ctx := context.Background()
	trigger := func(kind string, skip bool) bool {
		t.Helper()
		_, taken, err := s.RunTriggered(ctx, syncer.Trigger{UserID: u, Kind: kind, SkipBackoff: skip})
		if err != nil {
			t.Fatal(err)
		}
		return taken
	}
	if trigger("webhook", false) {
		t.Fatal("a webhook synced a user in its failure backoff")
	}
	if !trigger("request", true) {
		t.Fatal("request_sync() did not skip the backoff")
	}
	if v := e.syncState(u); v.Status != "ok" {
		t.Fatalf("the requested sync: %+v", v)
	}
	e.clock.Add(30 * time.Second)
	if trigger("request", true) || trigger("webhook", false) {
		t.Fatal("a trigger synced the user again within TRIGGER_MIN_INTERVAL")
	}
	e.clock.Add(31 * time.Second)
	if !trigger("webhook", false) {
		t.Fatal("after TRIGGER_MIN_INTERVAL (and no backoff) the webhook was refused")
	}
	if n := e.q(`select count(*) from sync_state where user_id = $1 and last_triggered_at = $2`, u, e.clock.Now()); n != 1 {
		t.Fatal("last_triggered_at is not the taken trigger's time")
	}
}

// Finding 5: a single-user run (--user, a webhook, a request) enrols at most that user; before,
// each one enrolled the whole population.
func TestSingleUserRunEnrolsOnlyItsUser(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: simulator.Config{Seed: 16, Users: 3, KeysPerUser: 1, TasksPerUser: 1}})
	users := e.sim.Users()
	s := e.syncer()
	if _, taken, err := s.RunTriggered(context.Background(), syncer.Trigger{UserID: users[0], Kind: "webhook"}); err != nil || !taken {
		t.Fatalf("webhook trigger of a new user: taken %v, %v", taken, err)
	}
	e.cycle(s, syncer.CycleOptions{UserID: users[1], Trigger: "once"})
	if n := e.q(`select count(*) from sync_state`); n != 2 {
		t.Fatalf("%d users enrolled after two single-user runs, want 2", n)
	}
	if n := e.q(`select count(*) from sync_state where user_id = $1`, users[2]); n != 0 {
		t.Fatal("a single-user run enrolled someone else")
	}
	e.cycle(s, syncer.CycleOptions{})
	if n := e.q(`select count(*) from sync_state`); n != 3 {
		t.Fatalf("a scheduled cycle enrolled %d users, want all 3", n)
	}
}

package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/usage-sync/usage-sync/internal/config"
	"github.com/usage-sync/usage-sync/internal/pgtest"
	"github.com/usage-sync/usage-sync/internal/simulator"
)

// noLeaks returns a func that fails t if a goroutine started since noLeaks is still there; defer
// it once the test's own servers are up, so that what it finds is the daemon's: a connection
// the daemon kept to the simulator or the database shows while those still serve. The test must
// not be parallel: goleak sees the whole process (the package's parallel tests wait in
// t.Parallel while a sequential test runs, and goroutines already there are ignored).
func noLeaks(t *testing.T) func() {
	t.Helper()
	before := goleak.IgnoreCurrent()
	return func() { t.Helper(); goleak.VerifyNone(t, before) }
}

// probeClient keeps no connection alive, so it leaves no goroutine behind.
var probeClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}

func probe(t *testing.T, url string) (int, error) {
	t.Helper()
	resp, err := probeClient.Get(url)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// addrOf returns the address an event such as "metrics.listening" logged.
func addrOf(t *testing.T, stderr *output, event string) string {
	t.Helper()
	m := regexp.MustCompile(`"event":"` + regexp.QuoteMeta(event) + `","addr":"([^"]+)"`).FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("no %s address in:\n%s", event, stderr.String())
	}
	return m[1]
}

// untilExit runs the daemon until it stops by itself (a failure) and returns Run's error.
func untilExit(t *testing.T, getenv Load, stderr *output) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, nil, getenv, &output{}, stderr) }()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		cancel()
		<-done
		t.Fatalf("the daemon did not stop by itself:\n%s", stderr.String())
		return nil
	}
}

// stopOrder is the parts in the order the log says they stopped.
func stopOrder(stderr string) []string {
	var parts []string
	for _, m := range regexp.MustCompile(`"event":"daemon.part_stopped","part":"([a-z]+)"`).FindAllStringSubmatch(stderr, -1) {
		parts = append(parts, m[1])
	}
	return parts
}

// deliver posts run i's unsigned completion webhook for user to the daemon that logged stderr.
func deliver(t *testing.T, stderr *output, i int, user string) {
	t.Helper()
	body := `{"event_type":"email_verification_completed","task_id":"t` + fmt.Sprint(i) + `","data":{"user_id":"` + user + `","stats":{"total":1,"completed":1,"failed":0}}}`
	resp, err := probeClient.Post("http://"+addrOf(t, stderr, "webhook.listening")+"/webhooks/tasks", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("run %d: webhook answered %d", i, resp.StatusCode)
	}
}

// The daemon, started and stopped 100 times in-process against one database and the simulator,
// with its probes, request poll, schedule and webhooks: each time it comes up (daemon.started,
// /livez and /readyz 200), stops on cancellation with nil, in the documented order, its probes
// gone; every fifth time it is stopped while a webhook's sync is held in the upstream, which is
// abandoned, and every fifth (the next) after a webhook's sync has completed. At the end no goroutine is left: the pools, servers, listeners and upstream
// connections of all 100 are closed.
func TestDaemonStartStop100(t *testing.T) {
	const runs, held = 100, 5
	dsn, sim, base := simulated(t, 15, 2*runs/held)
	defer noLeaks(t)()
	users := sim.Users()
	getenv := env(dsn, func(c *config.Config) {
		c.UpstreamBaseURL = base
		c.UpstreamAdminToken = "adm"
		c.LogLevel = "debug"
		c.SyncEnabled = true
		c.SyncSchedule = "0 0 1 1 *"
		c.SyncRequestPoll = 100 * time.Millisecond
		c.WebhookAddr = "127.0.0.1:0"
	})
	for i := range runs {
		var stderr output
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- Run(ctx, nil, getenv, &output{}, &stderr) }()
		wait(t, stderr.when(`"event":"daemon.started"`), "daemon.started", &stderr)
		if !strings.Contains(stderr.String(), `"event":"daemon.started","parts":["metrics","database","requests","schedule","webhooks"]`) {
			cancel()
			t.Fatalf("run %d: the parts did not start in the documented order:\n%s", i, stderr.String())
		}
		ops := "http://" + addrOf(t, &stderr, "metrics.listening")
		for _, path := range []string{"/livez", "/readyz"} {
			if code, err := probe(t, ops+path); code != http.StatusOK {
				cancel()
				t.Fatalf("run %d: GET %s = %d (%v) after daemon.started:\n%s", i, path, code, err, stderr.String())
			}
		}
		switch i % held {
		case 0:
			// Hold this user's first upstream read and stop the daemon while it waits.
			user := users[2*(i/held)]
			reading := make(chan struct{})
			var once sync.Once
			sim.SetFault(user, simulator.Fault{Delay: time.Hour})
			sim.OnRequest(func(u, _ string, _ url.Values) {
				if u == user {
					once.Do(func() { close(reading) })
				}
			})
			deliver(t, &stderr, i, user)
			wait(t, reading, "the webhook's upstream read", &stderr)
		case 1:
			// A sync that completes, leaving kept-alive connections to the upstream behind.
			deliver(t, &stderr, i, users[2*(i/held)+1])
			wait(t, stderr.when(`"event":"sync.cycle.done"`), "the webhook's cycle", &stderr)
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run %d: Run after cancel = %v, want nil:\n%s", i, err, stderr.String())
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("run %d: Run did not return after cancel:\n%s", i, stderr.String())
		}
		sim.OnRequest(nil)
		out := stderr.String()
		if got, want := stopOrder(out), []string{"webhooks", "schedule", "requests", "metrics"}; !slices.Equal(got, want) {
			t.Fatalf("run %d: parts stopped in the order %v, want %v:\n%s", i, got, want, out)
		}
		if i%held == 0 && !strings.Contains(out, `"event":"sync.user.abandoned"`) {
			t.Fatalf("run %d: the held webhook sync was not abandoned:\n%s", i, out)
		}
		// (cron's own debug "schedule.stop" may come later: robfig logs it as its loop returns.)
		if stopped := strings.Index(out, `"event":"daemon.stopped"}`); stopped < strings.Index(out, `"part":"metrics"`) {
			t.Fatalf("run %d: daemon.stopped missing or before the last part stopped:\n%s", i, out)
		}
		if _, err := probe(t, ops+"/livez"); err == nil {
			t.Fatalf("run %d: the probe listener outlived the daemon", i)
		}
	}
}

// A signal while the daemon waits for its database ends the wait at once, even in the middle of
// an attempt that would hang for dbWaitAttempt (a server that accepts and never answers), and
// leaves no goroutine.
func TestDaemonStopsPromptlyMidDatabaseAttempt(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan struct{})
	var conns []net.Conn
	var mu sync.Mutex
	served := make(chan struct{})
	go func() {
		defer close(served)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if conns = append(conns, c); len(conns) == 1 {
				close(accepted)
			}
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-served
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	defer noLeaks(t)()

	var stderr output
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, nil, env("postgres://postgres@"+ln.Addr().String()+"/app?sslmode=disable", func(c *config.Config) {
			c.SyncEnabled = true
		}), &output{}, &stderr)
	}()
	ops := "http://" + func() string {
		wait(t, stderr.when(`"event":"metrics.listening"`), "metrics.listening", &stderr)
		return addrOf(t, &stderr, "metrics.listening")
	}()
	wait(t, accepted, "the first attempt's connection", &stderr)
	if code, _ := probe(t, ops+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz = %d while the database hangs, want 503", code)
	}
	started := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after a signal mid-attempt = %v, want nil", err)
		}
	case <-time.After(2 * dbWaitAttempt):
		t.Fatalf("Run did not return after cancel:\n%s", stderr.String())
	}
	// An attempt waited out takes dbWaitAttempt; one cut short by the signal, next to nothing.
	if took := time.Since(started); took >= dbWaitAttempt {
		t.Fatalf("Run took %s to stop: it waited the attempt out", took)
	}
	out := stderr.String()
	if !strings.Contains(out, `"event":"daemon.stopped","while":"waiting for the database"`) || strings.Contains(out, "run.failed") {
		t.Fatalf("want daemon.stopped while waiting for the database and no run.failed:\n%s", out)
	}
	if strings.Contains(out, "daemon.started") || strings.Contains(out, "schedule.started") {
		t.Fatalf("parts after the database started:\n%s", out)
	}
}

// A part that cannot start (its port taken) stops the daemon with exit 3 and a line naming the
// variable, after stopping the parts already running in the reverse order; the parts after it
// never start, and no goroutine is left. The first part failing (METRICS_ADDR taken) starts
// nothing else.
func TestDaemonPartFailingAtStartStopsTheOthers(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { taken.Close() })
	dsn := pgtest.MigratedDB(t, pgtest.Plain)
	defer noLeaks(t)()

	var stderr output
	err = untilExit(t, env(dsn, func(c *config.Config) {
		c.SyncEnabled = true
		c.SyncSchedule = "0 0 1 1 *"
		c.WebhookAddr = taken.Addr().String()
	}), &stderr)
	out := stderr.String()
	if ExitCode(err) != ExitRuntime || !Reported(err) {
		t.Fatalf("Run with WEBHOOK_ADDR taken = %v (exit %d), want exit %d:\n%s", err, ExitCode(err), ExitRuntime, out)
	}
	for _, want := range []string{
		`"stage":"webhooks"`, "listen for webhooks on WEBHOOK_ADDR " + taken.Addr().String(), "address already in use",
		"\nusage-sync: webhooks failed: listen for webhooks on WEBHOOK_ADDR",
		`"event":"schedule.started"`, `"event":"schedule.stopped"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stderr lacks %q:\n%s", want, out)
		}
	}
	if got, want := stopOrder(out), []string{"schedule", "requests", "metrics"}; !slices.Equal(got, want) {
		t.Errorf("parts stopped in the order %v, want %v", got, want)
	}
	if strings.Contains(out, "daemon.started") || strings.Contains(out, `"event":"daemon.stopped"`) {
		t.Errorf("a failed start is neither started nor a clean stop:\n%s", out)
	}
	if _, err := probe(t, "http://"+addrOf(t, &stderr, "metrics.listening")+"/livez"); err == nil {
		t.Error("the probe listener outlived the failed start")
	}

	var first output
	err = untilExit(t, env(dsn, func(c *config.Config) {
		c.SyncEnabled = true
		c.MetricsAddr = taken.Addr().String()
	}), &first)
	if out := first.String(); ExitCode(err) != ExitRuntime || !strings.Contains(out, `"stage":"metrics"`) ||
		!strings.Contains(out, "METRICS_ADDR "+taken.Addr().String()) || strings.Contains(out, "daemon.database_wait") || strings.Contains(out, "schedule.started") {
		t.Fatalf("Run with METRICS_ADDR taken = %v (exit %d), want exit %d before anything else starts:\n%s", err, ExitCode(err), ExitRuntime, out)
	}
}

// fakePart is a part for runParts' own tests: it records its start and stop in log, fails its
// start when told, and dies when die is closed.
type fakePart struct {
	name     string
	failWith error         // start's error
	block    bool          // start waits for ctx
	onStart  func()        // called by start, after it is recorded
	die      chan struct{} // closed: run returns errDied
	started  chan struct{} // closed once run runs
}

var errDied = errors.New("died")

type events struct {
	mu  sync.Mutex
	got []string
}

func (e *events) add(s string) { e.mu.Lock(); defer e.mu.Unlock(); e.got = append(e.got, s) }
func (e *events) list() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.got)
}

func (f *fakePart) part(ev *events) part {
	return part{
		name: f.name, starting: "starting " + f.name,
		start: func(ctx context.Context) error {
			ev.add("start " + f.name)
			if f.onStart != nil {
				f.onStart()
			}
			if f.block {
				<-ctx.Done()
				return ctx.Err()
			}
			return f.failWith
		},
		run: func(ctx context.Context) error {
			close(f.started)
			select {
			case <-ctx.Done():
				ev.add("stop " + f.name)
				return nil
			case <-f.die:
				ev.add("died " + f.name)
				return errDied
			}
		},
	}
}

// runParts' order and its one shutdown path, whatever begins it: a signal, a part dying, a part
// failing at start, a signal during a start; with a single errgroup, the part that stopped the
// daemon is the error, and every part started is stopped in the reverse order.
func TestRunPartsOrder(t *testing.T) {
	defer noLeaks(t)()
	tests := []struct {
		name string
		// set up the fakes a, b, c, d and say how the shutdown begins
		setup   func(f map[string]*fakePart, cancel context.CancelFunc)
		want    []string
		wantErr string // the failed part's name, "" for nil
	}{
		{"signal", func(f map[string]*fakePart, cancel context.CancelFunc) {
			go func() { <-f["d"].started; cancel() }()
		}, []string{"start a", "start b", "start c", "start d", "stop d", "stop c", "stop b", "stop a"}, ""},
		{"a part dies", func(f map[string]*fakePart, _ context.CancelFunc) {
			go func() { <-f["d"].started; close(f["b"].die) }()
		}, []string{"start a", "start b", "start c", "start d", "died b", "stop d", "stop c", "stop a"}, "b"},
		{"a start fails", func(f map[string]*fakePart, _ context.CancelFunc) {
			f["c"].failWith = errors.New("port taken")
		}, []string{"start a", "start b", "start c", "stop b", "stop a"}, "c"},
		{"signal during a start", func(f map[string]*fakePart, cancel context.CancelFunc) {
			f["c"].block, f["c"].onStart = true, cancel
		}, []string{"start a", "start b", "start c", "stop b", "stop a"}, ""},
		{"a part dies during a later start", func(f map[string]*fakePart, _ context.CancelFunc) {
			f["c"].block, f["c"].onStart = true, func() { close(f["a"].die) }
		}, []string{"start a", "start b", "start c", "died a", "stop b"}, "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := &events{}
			fakes := map[string]*fakePart{}
			var parts []part
			for _, n := range []string{"a", "b", "c", "d"} {
				fakes[n] = &fakePart{name: n, die: make(chan struct{}), started: make(chan struct{})}
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			tt.setup(fakes, cancel)
			for _, n := range []string{"a", "b", "c", "d"} {
				parts = append(parts, fakes[n].part(ev))
			}
			stopping := 0
			err := runParts(ctx, zap.NewNop(), parts, func() { stopping++ })
			if got := ev.list(); !slices.Equal(got, tt.want) {
				t.Errorf("events %v, want %v", got, tt.want)
			}
			if stopping != 1 {
				t.Errorf("stopping called %d times, want once", stopping)
			}
			var pe *partError
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("runParts = %v, want nil", err)
			case tt.wantErr != "" && (!errors.As(err, &pe) || pe.part != tt.wantErr || pe.code != ExitRuntime):
				t.Errorf("runParts = %v, want part %s's failure", err, tt.wantErr)
			}
		})
	}

	// A part whose run returns nil before it is stopped has died too.
	quits := part{name: "quits", run: func(context.Context) error { return nil }}
	err := runParts(context.Background(), zap.NewNop(), []part{quits}, func() {})
	var pe *partError
	if !errors.As(err, &pe) || pe.part != "quits" || !strings.Contains(err.Error(), "stopped by itself") {
		t.Fatalf("runParts with a part that returns by itself = %v", err)
	}
}

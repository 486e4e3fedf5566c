package schedule

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// every fires each d, below the one-second floor of cron's "@every", so tests stay fast.
type every time.Duration

func (e every) Next(t time.Time) time.Time { return t.Add(time.Duration(e)) }

// watch returns a logger that reports each event name on a buffered channel, so a test can wait
// for "schedule.skipped" or "schedule.panic" instead of sleeping.
func watch() (*zap.Logger, <-chan string) {
	events := make(chan string, 1024)
	obs, _ := observer.New(zapcore.DebugLevel)
	core := zapcore.RegisterHooks(obs, func(e zapcore.Entry) error {
		select {
		case events <- e.Message:
		default:
		}
		return nil
	})
	return zap.New(core), events
}

func waitEvent(t *testing.T, events <-chan string, name string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case e := <-events:
			if e == name {
				return
			}
		case <-deadline:
			t.Fatalf("no %s event within 10s", name)
		}
	}
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

func start(t *testing.T, log *zap.Logger, job func(ctx context.Context)) (cancel func(), done <-chan error) {
	t.Helper()
	ctx, cancelCtx := context.WithCancel(context.Background())
	ch := make(chan error, 1)
	returned := make(chan struct{})
	go func() {
		ch <- run(ctx, every(5*time.Millisecond), "test", log, job)
		close(returned)
	}()
	t.Cleanup(func() {
		cancelCtx()
		recv(t, returned, "run to return at cleanup")
	})
	return cancelCtx, ch
}

func TestRunRepeats(t *testing.T) {
	t.Parallel()
	runs := make(chan struct{}, 100)
	start(t, zap.NewNop(), func(context.Context) {
		select {
		case runs <- struct{}{}:
		default:
		}
	})
	for i := 0; i < 3; i++ {
		recv(t, runs, "a run")
	}
}

func TestRunSurvivesPanic(t *testing.T) {
	t.Parallel()
	log, events := watch()
	var calls atomic.Int32
	later := make(chan struct{}, 100)
	start(t, log, func(context.Context) {
		if calls.Add(1) == 1 {
			panic("boom")
		}
		select {
		case later <- struct{}{}:
		default:
		}
	})
	waitEvent(t, events, "schedule.panic")
	recv(t, later, "a run after the panic")
}

func TestRunSkipsOverlap(t *testing.T) {
	t.Parallel()
	log, events := watch()
	var running, maxRunning, calls atomic.Int32
	release := make(chan struct{})
	ran := make(chan struct{}, 100)
	start(t, log, func(context.Context) {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			m := maxRunning.Load()
			if n <= m || maxRunning.CompareAndSwap(m, n) {
				break
			}
		}
		if calls.Add(1) == 1 {
			<-release
		}
		select {
		case ran <- struct{}{}:
		default:
		}
	})
	// The first run holds; the scheduler keeps firing and must skip rather than start another.
	waitEvent(t, events, "schedule.skipped")
	if got := calls.Load(); got != 1 {
		t.Fatalf("job entered %d times while the first run was still running, want 1", got)
	}
	close(release)
	recv(t, ran, "the first run to finish")
	recv(t, ran, "a later run")
	if m := maxRunning.Load(); m != 1 {
		t.Fatalf("at most %d runs at once, want 1", m)
	}
}

func TestRunWaitsForRunningJobOnCancel(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	started := make(chan struct{})
	release := make(chan struct{})
	var finished atomic.Bool
	var sawCancel atomic.Bool
	cancel, done := start(t, zap.NewNop(), func(ctx context.Context) {
		if calls.Add(1) != 1 {
			return
		}
		close(started)
		<-ctx.Done()
		sawCancel.Store(true)
		<-release
		finished.Store(true)
	})
	recv(t, started, "the job to start")
	cancel()
	select {
	case <-done:
		t.Fatal("Run returned while the job was still running")
	default:
	}
	close(release)
	if err := recv(t, done, "Run to return"); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !sawCancel.Load() || !finished.Load() {
		t.Fatalf("Run returned before the job did (saw cancel %v, finished %v)", sawCancel.Load(), finished.Load())
	}
}

func TestRunPublicSpec(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan struct{}, 10)
	done := make(chan error, 1)
	// "@every 1s" is the fastest real spec; the first run comes at the next whole second.
	go func() {
		done <- Run(ctx, "@every 1s", nil, func(context.Context) {
			select {
			case ran <- struct{}{}:
			default:
			}
		})
	}()
	recv(t, ran, "a run of @every 1s")
	cancel()
	if err := recv(t, done, "Run to return"); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestRunRejectsBadSpec(t *testing.T) {
	t.Parallel()
	called := false
	err := Run(context.Background(), "*/5 * *", nil, func(context.Context) { called = true })
	if err == nil || !strings.Contains(err.Error(), "expected 5 fields, found 3") {
		t.Fatalf("Run(bad spec) = %v, want a field-count error", err)
	}
	if called {
		t.Fatal("job ran on a bad spec")
	}
}

func TestNext(t *testing.T) {
	t.Parallel()
	berlin := time.FixedZone("CET", 3600)
	tests := []struct {
		spec string
		from time.Time
		want time.Time
	}{
		{"*/5 * * * *", time.Date(2026, 3, 1, 12, 3, 10, 0, time.UTC), time.Date(2026, 3, 1, 12, 5, 0, 0, time.UTC)},
		{"*/5 * * * *", time.Date(2026, 3, 1, 12, 5, 0, 0, time.UTC), time.Date(2026, 3, 1, 12, 10, 0, 0, time.UTC)},
		// Midnight means UTC midnight whatever zone the caller's clock is in.
		{"0 0 * * *", time.Date(2026, 3, 1, 0, 30, 0, 0, berlin), time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)},
		{"@hourly", time.Date(2026, 3, 1, 12, 3, 0, 0, time.UTC), time.Date(2026, 3, 1, 13, 0, 0, 0, time.UTC)},
		{"@every 1m", time.Date(2026, 3, 1, 12, 3, 10, 0, time.UTC), time.Date(2026, 3, 1, 12, 4, 10, 0, time.UTC)},
	}
	for _, tt := range tests {
		got, err := Next(tt.spec, tt.from)
		if err != nil {
			t.Errorf("Next(%q): %v", tt.spec, err)
			continue
		}
		if !got.Equal(tt.want) || got.Location() != time.UTC {
			t.Errorf("Next(%q, %s) = %s, want %s", tt.spec, tt.from, got, tt.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		spec, want string
	}{
		{"", "empty"},
		{"*/5 * *", "expected 5 fields, found 3"},
		{"0 */5 * * * *", "expected 5 fields, found 6"},
		{"61 * * * *", "above maximum"},
		{"@sometimes", "unrecognized descriptor"},
		{"CRON_TZ=Europe/Berlin 0 0 * * *", "always UTC"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.spec)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", tt.spec, err, tt.want)
		}
	}
}

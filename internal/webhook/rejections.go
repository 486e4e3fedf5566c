package webhook

import (
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/usage-sync/usage-sync/internal/clock"
	"github.com/usage-sync/usage-sync/internal/safetext"
)

// rejectLogEveryDefault is how often, at most, rejected deliveries are logged: a flood of
// forged requests costs one line per interval, with counts, not one line per request.
const rejectLogEveryDefault = time.Second

// maxReasons bounds the distinct reasons counted per interval: a reason can quote the request.
const maxReasons = 16

// rejections aggregates the log lines of rejected deliveries. The first rejection after a quiet
// interval is logged at once, with its reason; the ones that follow within the interval are
// counted and logged together when it ends.
type rejections struct {
	log   *zap.Logger
	event string        // the log line's event: webhook.rejected, webhook.duplicate
	level zapcore.Level // warn for rejections; info for duplicates, which senders' retries make normal
	every time.Duration
	clock clock.Clock

	mu      sync.Mutex
	last    time.Time      // when the last line was written
	pending map[string]int // "status why" → rejections not yet logged
	timer   *time.Timer    // flushes pending at the end of the interval; nil when none waits
}

func newRejections(log *zap.Logger, event string, level zapcore.Level) *rejections {
	return &rejections{log: log, event: event, level: level, every: rejectLogEveryDefault, pending: map[string]int{}}
}

func (r *rejections) note(status int, why, taskID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.clock.Now()
	if len(r.pending) == 0 && now.Sub(r.last) >= r.every {
		r.last = now
		r.log.Log(r.level, r.event, zap.Int("status", status), zap.String("why", why),
			zap.String("task_id", safetext.Clean(taskID, safetext.MaxIDDefault)), zap.Int("count", 1))
		return
	}
	key := http3(status) + " " + safetext.Clean(why, 100)
	if _, ok := r.pending[key]; !ok && len(r.pending) >= maxReasons {
		key = http3(status) + " other"
	}
	r.pending[key]++
	if r.timer == nil {
		r.timer = time.AfterFunc(max(r.every-now.Sub(r.last), 0), r.flush)
	}
}

// flush logs what was counted since the last line, if anything.
func (r *rejections) flush() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	if len(r.pending) == 0 {
		return
	}
	total := 0
	reasons := make([]string, 0, len(r.pending))
	for k, n := range r.pending {
		total += n
		reasons = append(reasons, k)
	}
	sort.Strings(reasons)
	fields := []zap.Field{zap.Int("count", total), zap.Duration("interval", r.every)}
	for _, k := range reasons {
		fields = append(fields, zap.Int(k, r.pending[k]))
	}
	r.log.Log(r.level, r.event, fields...)
	r.pending = map[string]int{}
	r.last = r.clock.Now()
}

// http3 renders a status as its three digits.
func http3(status int) string {
	return string([]byte{byte('0' + status/100%10), byte('0' + status/10%10), byte('0' + status%10)})
}

// Package webhook receives the upstream's task-completion webhooks and turns each into a prompt
// sync of its user; polling stays the source of truth, so a webhook is only ever a trigger.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/usage-sync/usage-sync/internal/safetext"
)

// Path is where the daemon serves the webhook.
const Path = "/webhooks/tasks"

// MaxBodyDefault bounds a delivery's body, enforced while it is read and before the signature
// is checked: a completion event is a few hundred bytes (its per-email results are read from the
// API, never from the delivery), so 64 KiB is ample, and 50 held connections cost 3 MiB.
const MaxBodyDefault = 64 << 10

// Trigger queues a sync of one user; it reports false when the delivery had to be dropped.
type Trigger interface {
	Trigger(userID string) bool
}

// Users says whether a user exists (profiles); *store.Store implements it.
type Users interface {
	HasUser(ctx context.Context, user string) (bool, error)
}

// Handler verifies and decodes deliveries and triggers syncs. Deliveries may repeat and the
// signature carries no timestamp, so nothing is taken from the payload but the user to sync:
// the sync reads the task from the API. A delivery already acted on (same user, task and
// stats) is acknowledged without a sync, and the syncer lets no trigger sync one user more than
// once per TRIGGER_MIN_INTERVAL, so a replay costs nothing.
type Handler struct {
	secret     []byte
	trig       Trigger
	users      Users // nil: every user is taken as known (tests)
	log        *zap.Logger
	rejected   *rejections // rejected deliveries, logged in aggregate
	duplicates *rejections // deliveries already acted on, logged in aggregate
	acted      *recent
}

// New returns a Handler. With an empty secret every delivery is accepted unsigned (the
// configuration allows that only on a loopback WEBHOOK_ADDR). users may be nil.
func New(secret string, trig Trigger, users Users, log *zap.Logger) *Handler {
	if log == nil {
		log = zap.NewNop()
	}
	return &Handler{secret: []byte(secret), trig: trig, users: users, log: log,
		rejected:   newRejections(log, "webhook.rejected", zapcore.WarnLevel),
		duplicates: newRejections(log, "webhook.duplicate", zapcore.InfoLevel),
		acted:      newRecent(rememberedDefault)}
}

type delivery struct {
	EventType string `json:"event_type"`
	TaskID    string `json:"task_id"`
	Data      struct {
		UserID string          `json:"user_id"`
		Stats  json.RawMessage `json:"stats"`
		Job    json.RawMessage `json:"job"`
	} `json:"data"`
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.reply(w, http.StatusMethodNotAllowed, "use POST", "")
		return
	}
	// The cap applies while reading: a larger body is cut off at MaxBodyDefault, not buffered
	// whole, and the connection is closed after the answer.
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyDefault))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			h.reply(w, http.StatusRequestEntityTooLarge, "body over 64 KiB", "")
			return
		}
		h.reply(w, http.StatusBadRequest, "unreadable body", "")
		return
	}
	if len(h.secret) > 0 && !h.signed(r.Header.Get("X-Webhook-Signature"), body) {
		h.reply(w, http.StatusUnauthorized, "missing or wrong X-Webhook-Signature", "")
		return
	}
	var d delivery
	if err := json.Unmarshal(body, &d); err != nil {
		h.reply(w, http.StatusBadRequest, "body is not the webhook's JSON: "+err.Error(), "")
		return
	}
	if d.EventType != "email_verification_completed" || !present(d.Data.Stats) {
		// Per-email callbacks share the event type but carry data.job: not completions.
		h.log.Debug("webhook.ignored", zap.String("event_type", d.EventType), zap.String("task_id", d.TaskID))
		writeJSON(w, http.StatusAccepted, map[string]string{"status": "ignored"})
		return
	}
	if !safetext.IsUUID(d.Data.UserID) {
		h.reply(w, http.StatusBadRequest, "data.user_id is not a UUID", d.TaskID)
		return
	}
	user := strings.ToLower(d.Data.UserID)
	key := deliveryKey(user, d.TaskID, d.Data.Stats)
	if !h.acted.add(key) {
		h.duplicates.note(http.StatusAccepted, "already acted on", d.TaskID)
		writeJSON(w, http.StatusAccepted, map[string]string{"status": "duplicate"})
		return
	}
	if h.users != nil {
		known, err := h.users.HasUser(r.Context(), user)
		if err != nil || !known {
			h.acted.remove(key) // not acted on: a later delivery may be
			if err != nil {
				h.log.Debug("webhook.lookup_failed", zap.Error(err))
				h.reply(w, http.StatusServiceUnavailable, "cannot look the user up now; retry later", d.TaskID)
				return
			}
			h.reply(w, http.StatusNotFound, "unknown user", d.TaskID)
			return
		}
	}
	if !h.trig.Trigger(user) {
		// Acknowledged all the same: the next scheduled cycle reads the task, and a retry
		// would only add to the load that filled the queue.
		h.acted.remove(key)
		h.rejected.note(http.StatusAccepted, "dropped: the sync queue is full; the next scheduled cycle reads the task", d.TaskID)
		writeJSON(w, http.StatusAccepted, map[string]string{"status": "dropped"})
		return
	}
	h.log.Info("webhook.received", zap.String("user_id", user), zap.String("task_id", d.TaskID))
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "queued"})
}

// deliveryKey identifies what a delivery says: its user, task and stats (white space
// compacted, so a re-indented body is the same delivery). The same task in another state (more
// emails done) is a new delivery.
func deliveryKey(user, taskID string, stats json.RawMessage) [sha256.Size]byte {
	var compact bytes.Buffer
	if json.Compact(&compact, stats) != nil {
		compact.Reset()
		compact.Write(stats)
	}
	h := sha256.New()
	for _, part := range [][]byte{[]byte(user), []byte(taskID), compact.Bytes()} {
		h.Write([]byte(strconv.Itoa(len(part)) + ":"))
		h.Write(part)
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

func (h *Handler) signed(header string, body []byte) bool {
	sig, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return false
	}
	got, err := hex.DecodeString(sig)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, h.secret)
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}

func (h *Handler) reply(w http.ResponseWriter, status int, why, taskID string) {
	h.rejected.note(status, why, taskID)
	writeJSON(w, status, map[string]string{"error": why})
}

func present(raw json.RawMessage) bool {
	s := strings.TrimSpace(string(raw))
	return s != "" && s != "null"
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Queue coalesces triggers per user and runs them one at a time: a burst of deliveries for one
// user costs one sync, and the fast path never competes with the scheduled cycle for more than
// one user's worth of connections.
type Queue struct {
	mu      sync.Mutex
	pending map[string]bool
	order   []string
	max     int
	wake    chan struct{}
}

// NewQueue holds at most max distinct users waiting.
func NewQueue(max int) *Queue {
	return &Queue{pending: map[string]bool{}, max: max, wake: make(chan struct{}, 1)}
}

// Trigger queues user unless it is already waiting; false when the queue is full.
func (q *Queue) Trigger(user string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.pending[user] {
		return true
	}
	if len(q.order) >= q.max {
		return false
	}
	q.pending[user] = true
	q.order = append(q.order, user)
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return true
}

// Run syncs queued users with sync until ctx is done.
func (q *Queue) Run(ctx context.Context, sync func(ctx context.Context, user string)) {
	for {
		q.mu.Lock()
		var user string
		if len(q.order) > 0 {
			user, q.order = q.order[0], q.order[1:]
			delete(q.pending, user)
		}
		q.mu.Unlock()
		if user != "" {
			sync(ctx, user)
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-q.wake:
		}
	}
}

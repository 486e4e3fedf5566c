package simulator

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// reply is an endpoint's answer, built under the lock and written after it.
type reply struct {
	status int
	body   any
	header http.Header
}

type errorBody struct {
	Error  string            `json:"error"`
	Fields map[string]string `json:"fields,omitempty"`
}

func errReply(status int, msg string) reply {
	return reply{status: status, body: errorBody{Error: msg}}
}

func fieldsReply(fields map[string]string) reply {
	return reply{status: http.StatusBadRequest, body: errorBody{Error: "invalid request", Fields: fields}}
}

func retryReply(after time.Duration) reply {
	secs := max(int64(after/time.Second), 0)
	rep := errReply(http.StatusTooManyRequests, "rate limit exceeded")
	rep.header = http.Header{"Retry-After": {strconv.FormatInt(secs, 10)}}
	return rep
}

// endpoint answers a request for u at the simulator's time now; it runs under s.mu.
type endpoint func(u *user, r *http.Request, now time.Time) reply

// Handler serves the API under /api/v1.
func (s *Sim) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /api/v1/api-keys", s.serve(s.listKeys))
	mux.Handle("GET /api/v1/metrics/api-usage", s.serve(s.apiUsage))
	mux.Handle("GET /api/v1/tasks", s.serve(s.listTasks))
	mux.Handle("GET /api/v1/tasks/{id}", s.serve(s.getTask))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.record(r.URL.Path)
		write(w, errReply(http.StatusNotFound, "not found"), false)
	})
	return mux
}

// record counts a request and returns its sequence number, starting at 1.
func (s *Sim) record(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hits[path]++
	s.served++
	return s.served
}

// serve runs the steps every request goes through: authentication, the test hook, latency,
// throttling and injected faults, then the endpoint itself.
func (s *Sim) serve(fn endpoint) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		seq := s.record(r.URL.Path)
		userID, rep, ok := s.authenticate(r)
		status := 0
		// In flight from here to the answer (or the client going away), refused ones included.
		i := s.begin(userID, r.URL.Path, r.URL.Query())
		defer func() { s.end(i, status) }()
		answer := func(rep reply, truncate bool) { status = write(w, rep, truncate) }
		if !ok {
			answer(rep, false)
			return
		}

		s.mu.Lock()
		hook := s.onRequest
		s.mu.Unlock()
		if hook != nil {
			hook(userID, r.URL.Path, r.URL.Query())
		}
		if !wait(ctx, s.cfg.Latency) {
			return
		}

		if rep, ok := s.throttle(seq); ok {
			answer(rep, false)
			return
		}
		f := s.takeFault(userID, r.URL.Path)
		if !wait(ctx, f.Delay) {
			return
		}
		if f.Status != 0 && !f.BadJSON {
			answer(faultReply(f), false)
			return
		}

		s.mu.Lock()
		if u, found := s.byID[userID]; found {
			rep = fn(u, r, s.cfg.Now())
		} else {
			rep = errReply(http.StatusNotFound, "user not found")
		}
		s.mu.Unlock()
		answer(rep, f.BadJSON)
	})
}

// wait blocks for d or until ctx is done, and reports whether the request should go on.
func wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// write sends rep and returns the status it was sent with.
func write(w http.ResponseWriter, rep reply, truncate bool) int {
	body, err := json.Marshal(rep.body)
	if err != nil {
		// Only the simulator's own types are marshalled: this is a bug, not a request problem.
		panic(fmt.Sprintf("simulator: marshal reply: %v", err))
	}
	status := rep.status
	if truncate {
		// A prefix of an object never closes it, so the body is never valid JSON.
		body, status = body[:len(body)/2], http.StatusOK
	}
	h := w.Header()
	for k, v := range rep.header {
		h[k] = v
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
	return status
}

// authenticate resolves the user a request acts for, or the error reply refusing it.
// Messages never echo the token.
func (s *Sim) authenticate(r *http.Request) (string, reply, bool) {
	invalid := errReply(http.StatusUnauthorized, "invalid token")
	scheme, token, found := strings.Cut(r.Header.Get("Authorization"), " ")
	if !found || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", invalid, false
	}
	userID := r.URL.Query().Get("user_id")
	if s.cfg.AdminToken != "" && subtle.ConstantTimeCompare([]byte(token), []byte(s.cfg.AdminToken)) == 1 {
		if userID == "" {
			return "", fieldsReply(map[string]string{"user_id": "required with an admin token"}), false
		}
		return userID, reply{}, true
	}
	if s.cfg.JWTSecret == "" {
		return "", invalid, false
	}
	// Expiry is checked against the wall clock, not Config.Now: the worker mints tokens with
	// real time, and a test that moves the simulated clock by days must not expire them.
	parsed, err := jwt.Parse(token, func(*jwt.Token) (any, error) { return []byte(s.cfg.JWTSecret), nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithAudience("authenticated"),
		jwt.WithExpirationRequired(),
	)
	if err != nil {
		return "", invalid, false
	}
	sub, err := parsed.Claims.GetSubject()
	if err != nil || sub == "" {
		return "", invalid, false
	}
	if userID != "" && userID != sub {
		return "", errReply(http.StatusForbidden, "forbidden"), false
	}
	return sub, reply{}, true
}

// throttle applies the global rate limit and error rate.
func (s *Sim) throttle(seq int) (reply, bool) {
	if n := s.cfg.RateLimitEvery; n > 0 && seq%n == 0 {
		return retryReply(s.cfg.RetryAfter), true
	}
	if s.cfg.ErrorRate > 0 {
		s.mu.Lock()
		fail := s.errRand.Float64() < s.cfg.ErrorRate
		s.mu.Unlock()
		if fail {
			return errReply(http.StatusInternalServerError, "internal server error"), true
		}
	}
	return reply{}, false
}

// takeFault returns the user's fault if it applies to path, using up one of its Times.
func (s *Sim) takeFault(userID, path string) Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.faults[userID]
	if !ok || !strings.Contains(path, f.Path) {
		return Fault{}
	}
	out := *f
	if f.Times > 0 {
		f.Times--
		if f.Times == 0 {
			delete(s.faults, userID)
		}
	}
	return out
}

func faultReply(f Fault) reply {
	switch f.Status {
	case http.StatusTooManyRequests:
		return retryReply(f.RetryAfter)
	case http.StatusUnauthorized:
		return errReply(f.Status, "invalid token")
	}
	msg := strings.ToLower(http.StatusText(f.Status))
	if msg == "" {
		msg = "error"
	}
	return errReply(f.Status, msg)
}

// Wire shapes. Fields the real API sends as null are pointers without omitempty.

type wireKey struct {
	ID            string  `json:"id"`
	Name          string  `json:"name"`
	Purpose       string  `json:"purpose"`
	IsActive      bool    `json:"is_active"`
	CreatedAt     string  `json:"created_at"`
	LastUsedAt    *string `json:"last_used_at"`
	TotalRequests int64   `json:"total_requests"`
}

type wireKeyList struct {
	Count int       `json:"count"`
	Keys  []wireKey `json:"keys"`
}

type wireUsage struct {
	UserID            string           `json:"user_id"`
	TotalAPIKeys      int              `json:"total_api_keys"`
	TotalRequests     int64            `json:"total_requests"`
	APIKeysByPurpose  map[string]int64 `json:"api_keys_by_purpose"`
	RequestsByPurpose map[string]int64 `json:"requests_by_purpose"`
	LastUsedAt        *string          `json:"last_used_at"`
}

type wireMetrics struct {
	TotalEmailAddresses int               `json:"total_email_addresses"`
	JobStatus           *map[string]int64 `json:"job_status,omitempty"`
	VerificationStatus  *map[string]int64 `json:"verification_status,omitempty"`
	Progress            float64           `json:"progress"`
	ProgressPercent     int               `json:"progress_percent"`
	LastRequestedAt     *string           `json:"last_verification_requested_at"`
	LastCompletedAt     *string           `json:"last_verification_completed_at"`
}

type wireTask struct {
	ID         string      `json:"id"`
	UserID     string      `json:"user_id"`
	WebhookURL *string     `json:"webhook_url"`
	CreatedAt  string      `json:"created_at"`
	UpdatedAt  *string     `json:"updated_at"`
	Metrics    wireMetrics `json:"metrics"`
	Source     string      `json:"source,omitempty"`
	XFuture    *struct{}   `json:"x_future,omitempty"`
}

type wireTaskDetail struct {
	wireTask
	StartedAt  *string   `json:"started_at"`
	FinishedAt *string   `json:"finished_at"`
	Jobs       []wireJob `json:"jobs"`
}

type wireJob struct {
	ID           string `json:"id"`
	TaskID       string `json:"task_id"`
	EmailAddress string `json:"email_address"`
	Status       string `json:"status"`
	CreatedAt    string `json:"created_at"`
	UpdatedAt    string `json:"updated_at"`
}

type wireTaskList struct {
	Count  int        `json:"count"`
	Limit  int        `json:"limit"`
	Offset int        `json:"offset"`
	Tasks  []wireTask `json:"tasks"`
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func stampPtr(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := stamp(*t)
	return &s
}

// parseTimes reads optional RFC 3339 timestamps (fractional seconds allowed) from q; a
// missing one is the zero time.
func parseTimes(q url.Values, names ...string) ([]time.Time, map[string]string) {
	out := make([]time.Time, len(names))
	var bad map[string]string
	for i, name := range names {
		v := q.Get(name)
		if v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			if bad == nil {
				bad = make(map[string]string)
			}
			bad[name] = "must be an RFC 3339 timestamp"
			continue
		}
		out[i] = t
	}
	return out, bad
}

func (s *Sim) listKeys(u *user, r *http.Request, now time.Time) reply {
	q := r.URL.Query()
	ts, bad := parseTimes(q, "from", "to")
	if bad != nil {
		return fieldsReply(bad)
	}
	from, to := ts[0], ts[1]
	windowed := !from.IsZero() || !to.IsZero()
	list := wireKeyList{Keys: []wireKey{}}
	for _, k := range u.keys {
		if k.Revoked {
			continue
		}
		last := k.lastUsed(now)
		total := k.count(time.Time{}, time.Time{}, now)
		if windowed {
			if u.lifetimeInWindows {
				if last == nil || (!from.IsZero() && last.Before(from)) || (!to.IsZero() && !last.Before(to)) {
					continue
				}
			} else if total = k.count(from, to, now); total == 0 {
				continue
			}
		}
		list.Keys = append(list.Keys, wireKey{
			ID:            k.ID,
			Name:          k.Name,
			Purpose:       k.Purpose,
			IsActive:      true,
			CreatedAt:     stamp(k.CreatedAt),
			LastUsedAt:    stampPtr(last),
			TotalRequests: total,
		})
	}
	list.Count = len(list.Keys)
	return reply{status: http.StatusOK, body: list}
}

func (s *Sim) apiUsage(u *user, r *http.Request, now time.Time) reply {
	ts, bad := parseTimes(r.URL.Query(), "from", "to")
	if bad != nil {
		return fieldsReply(bad)
	}
	from, to := ts[0], ts[1]
	out := wireUsage{
		UserID:            u.id,
		APIKeysByPurpose:  map[string]int64{},
		RequestsByPurpose: map[string]int64{},
	}
	var last *time.Time
	for _, k := range u.keys {
		if !k.Revoked {
			out.TotalAPIKeys++
			out.APIKeysByPurpose[k.Purpose]++
		}
		// Revoked keys' requests still count here; /api-keys no longer shows them.
		if n := k.count(from, to, now); n > 0 {
			out.TotalRequests += n
			out.RequestsByPurpose[k.Purpose] += n
		}
		if l := k.lastUsed(now); l != nil && (last == nil || l.After(*last)) {
			last = l
		}
	}
	out.LastUsedAt = stampPtr(last)
	return reply{status: http.StatusOK, body: out}
}

const (
	defaultLimit = 10
	maxLimit     = 100
)

// listQuery reads a task listing's created_after, created_before, limit and offset, with a
// message per bad field.
func listQuery(r *http.Request) (times [2]time.Time, limit, offset int, bad map[string]string) {
	q := r.URL.Query()
	ts, bad := parseTimes(q, "created_after", "created_before")
	if bad == nil {
		bad = make(map[string]string)
	}
	copy(times[:], ts)
	limit = defaultLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxLimit {
			bad["limit"] = fmt.Sprintf("must be an integer from 1 to %d", maxLimit)
		}
		limit = n
	}
	if v := q.Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			bad["offset"] = "must be an integer of at least 0"
		}
		offset = n
	}
	return times, limit, offset, bad
}

// listTasks filters created_after < created_at < created_before, both bounds exclusive, and
// sorts newest first (ties by id): the real order is undocumented, and this one shifts pages
// when tasks arrive mid-pass, as a worker must cope with.
func (s *Sim) listTasks(u *user, r *http.Request, now time.Time) reply {
	ts, limit, offset, bad := listQuery(r)
	if len(bad) > 0 {
		return fieldsReply(bad)
	}
	count, page := u.listPage(now, ts[0], ts[1], offset, limit)
	out := wireTaskList{Count: count, Limit: limit, Offset: offset, Tasks: []wireTask{}}
	for _, v := range page {
		out.Tasks = append(out.Tasks, summary(u.id, v))
	}
	return reply{status: http.StatusOK, body: out}
}

func (s *Sim) getTask(u *user, r *http.Request, now time.Time) reply {
	t, ok := u.taskByID[r.PathValue("id")]
	if !ok || t.createdAt().After(now) {
		return errReply(http.StatusNotFound, "task not found")
	}
	v := t.view(now)
	d := wireTaskDetail{
		wireTask:   summary(u.id, v),
		StartedAt:  stampPtr(v.startedAt),
		FinishedAt: stampPtr(v.FinishedAt),
		Jobs:       jobs(v),
	}
	return reply{status: http.StatusOK, body: d}
}

func summary(userID string, v taskView) wireTask {
	m := wireMetrics{
		TotalEmailAddresses: v.Emails,
		LastRequestedAt:     stampPtr(v.lastRequested),
		LastCompletedAt:     stampPtr(v.lastCompleted),
	}
	settled := v.Done + v.Failed
	switch {
	case v.Finished:
		m.Progress, m.ProgressPercent = 1, 100
	case v.Emails > 0:
		m.Progress = float64(settled) / float64(v.Emails)
		m.ProgressPercent = settled * 100 / v.Emails
	}
	if !v.omitJobStatus {
		js := map[string]int64{
			"pending":    int64(max(v.Emails-settled-v.processing, 0)),
			"processing": int64(v.processing),
			"completed":  int64(v.Done),
			"failed":     int64(v.Failed),
		}
		m.JobStatus = &js
	}
	if v.Results != nil {
		vs := v.Results
		m.VerificationStatus = &vs
	}
	w := wireTask{
		ID:        v.ID,
		UserID:    userID,
		CreatedAt: stamp(v.CreatedAt),
		Metrics:   m,
		Source:    v.Source,
	}
	if v.webhookURL != "" {
		hook := v.webhookURL
		w.WebhookURL = &hook
	}
	if !v.nullUpdated {
		w.UpdatedAt = stampPtr(v.updatedAt)
	}
	if v.xFuture {
		w.XFuture = &struct{}{}
	}
	return w
}

// jobs returns the first few per-email jobs: the real array is heavy and the worker must not
// depend on it, so a token sample is enough.
func jobs(v taskView) []wireJob {
	out := []wireJob{}
	for j := range min(v.Emails, 3) {
		status := "pending"
		switch {
		case j < v.Done:
			status = "completed"
		case j < v.Done+v.Failed:
			status = "failed"
		case j < v.Done+v.Failed+v.processing:
			status = "processing"
		}
		updated := v.CreatedAt
		if v.updatedAt != nil {
			updated = *v.updatedAt
		}
		out = append(out, wireJob{
			ID:           deriveUUID(0, fmt.Sprintf("job/%s/%d", v.ID, j)),
			TaskID:       v.ID,
			EmailAddress: fmt.Sprintf("user%d@example.test", j+1),
			Status:       status,
			CreatedAt:    stamp(v.CreatedAt),
			UpdatedAt:    stamp(updated),
		})
	}
	return out
}

// Package simulator is a deterministic, in-memory fake of the vendor's Email Verification API,
// served over real HTTP, for the project's tests, benchmarks and demo.
package simulator

import (
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Config tunes the generated data set and the simulator's behaviour. Every field is optional.
// For the size knobs, zero means "the default" and a negative value means "none", so a test can
// start from an empty simulator and add exactly what it needs.
type Config struct {
	Seed                 int64
	Users                int // default 3
	KeysPerUser          int // default 3
	TasksPerUser         int // default 5
	HistoryDays          int // default 3: requests and tasks are spread over the last N days
	RequestsPerKeyPerDay int // default 40, varied ±50% per key and day

	// AdminToken acts for any user named by user_id=; JWTSecret verifies HS256 user JWTs.
	// With neither set, every request is refused with 401.
	AdminToken string
	JWTSecret  string

	// Now is the simulator's clock: it decides which requests and tasks exist yet, range
	// totals with an open end, and task progress. Default time.Now.
	Now func() time.Time

	Latency        time.Duration // added to every request; cut short when the client goes away
	ErrorRate      float64       // fraction of requests answered 500, drawn from a Seed-seeded source
	RateLimitEvery int           // every Nth request (counting all requests) gets 429
	RetryAfter     time.Duration // Retry-After of those 429s, default 1s, sent in whole seconds

	// RecordRequests keeps every authenticated request's interval for Requests; the count of
	// requests in flight (InFlight) is kept regardless.
	RecordRequests bool
}

const (
	defaultUsers                = 3
	defaultKeysPerUser          = 3
	defaultTasksPerUser         = 5
	defaultHistoryDays          = 3
	defaultRequestsPerKeyPerDay = 40
	defaultRetryAfter           = time.Second
)

// Sim is the simulated upstream. All methods are safe for concurrent use.
type Sim struct {
	cfg Config

	mu        sync.Mutex
	users     []*user
	byID      map[string]*user
	faults    map[string]*Fault
	hits      map[string]int // per exact URL path
	served    int
	errRand   *rand.Rand
	onRequest func(userID, path string, query url.Values)
	added     int // names keys and tasks added without an ID
	flight    flight
}

type user struct {
	id                string
	newVocab          bool
	keys              []*key
	keyByID           map[string]*key
	tasks             []*task
	taskByID          map[string]*task
	lifetimeInWindows bool
}

// Key is an API key as AddKey takes it. Purpose is stored and sent exactly as given.
type Key struct {
	ID, Name, Purpose string
	CreatedAt         time.Time
	Revoked           bool
}

type key struct {
	Key
	reqs []int64 // request instants, unix nanoseconds, sorted
}

// KeyState is the ground truth about one key at the simulator's current time.
type KeyState struct {
	ID, Name, Purpose string
	Revoked           bool
	Lifetime          int64
	LastUsedAt        *time.Time
	CreatedAt         time.Time
}

// Task is a task as AddTask takes it. Such a task shows exactly these fields and does not
// progress by itself; change it with UpdateTask.
type Task struct {
	ID         string
	CreatedAt  time.Time
	Emails     int
	Done       int // emails that got a result
	Failed     int // emails that failed without one
	Finished   bool
	FinishedAt *time.Time       // nil: finished_at is null even when Finished
	Results    map[string]int64 // verification_status as sent; nil omits it
	// OmitJobStatus leaves job_status out of the metrics.
	OmitJobStatus bool
	WebhookURL    string // "" sends null
	Source        string // "" leaves the field out
}

// TaskState is the ground truth about one task, as the wire shows it at the current time.
type TaskState struct {
	ID         string
	CreatedAt  time.Time
	Emails     int
	Done       int
	Failed     int
	Finished   bool
	FinishedAt *time.Time
	Results    map[string]int64 // nil when the wire omits verification_status
	Source     string
	// OmitJobStatus is true when the wire leaves job_status out, so a task with neither counts
	// is billed at total_email_addresses.
	OmitJobStatus bool
}

// Fault makes a user's requests misbehave, for the worker's fault tests.
type Fault struct {
	Status     int           // answer with this status (401, 500, 429, ...); 0 = none
	Times      int           // how many matching requests get the fault; 0 = every one
	RetryAfter time.Duration // Retry-After of a 429, in whole seconds
	BadJSON    bool          // answer 200 with a truncated, invalid JSON body
	Delay      time.Duration // block this long (or until the client goes away) first
	Path       string        // only requests whose URL path contains this; "" = all
}

// New generates the data set for cfg. Generated timestamps are anchored at cfg.Now()
// truncated to the hour, so a restarted simulator with the same seed serves the same data
// for the rest of that hour.
func New(cfg Config) *Sim {
	cfg = withDefaults(cfg)
	s := &Sim{
		cfg:     cfg,
		byID:    make(map[string]*user),
		faults:  make(map[string]*Fault),
		hits:    make(map[string]int),
		errRand: seededRand(cfg.Seed, "errors"),
	}
	s.generate(cfg.Now().Truncate(time.Hour))
	return s
}

func withDefaults(cfg Config) Config {
	size := func(v *int, def int) {
		switch {
		case *v == 0:
			*v = def
		case *v < 0:
			*v = 0
		}
	}
	size(&cfg.Users, defaultUsers)
	size(&cfg.KeysPerUser, defaultKeysPerUser)
	size(&cfg.TasksPerUser, defaultTasksPerUser)
	size(&cfg.HistoryDays, defaultHistoryDays)
	size(&cfg.RequestsPerKeyPerDay, defaultRequestsPerKeyPerDay)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RetryAfter == 0 {
		cfg.RetryAfter = defaultRetryAfter
	}
	return cfg
}

// Now is the simulator's clock.
func (s *Sim) Now() time.Time { return s.cfg.Now() }

// Users returns the user ids: generated users first, then added ones, in the order added.
func (s *Sim) Users() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, len(s.users))
	for i, u := range s.users {
		ids[i] = u.id
	}
	return ids
}

// AddUser adds a user with no keys and no tasks; adding an existing user does nothing.
func (s *Sim) AddUser(userID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.userLocked(userID)
}

// userLocked returns the user, creating it when missing.
func (s *Sim) userLocked(userID string) *user {
	if u, ok := s.byID[userID]; ok {
		return u
	}
	u := &user{
		id:       userID,
		newVocab: seededRand(s.cfg.Seed, "vocab/"+userID).IntN(2) == 1,
		keyByID:  make(map[string]*key),
		taskByID: make(map[string]*task),
	}
	s.users = append(s.users, u)
	s.byID[userID] = u
	return u
}

// defaultsLocked fills what a test left out of an added key or task: an empty id gets one
// derived from the seed (so reruns agree), a zero creation time is Now.
func (s *Sim) defaultsLocked(userID, kind string, id *string, created *time.Time) {
	if *id == "" {
		s.added++
		*id = deriveUUID(s.cfg.Seed, fmt.Sprintf("added/%s/%s/%d", userID, kind, s.added))
	}
	if created.IsZero() {
		*created = s.cfg.Now()
	}
}

// AddKey adds a key (creating the user if needed), or replaces the fields of an existing one
// while keeping its requests. An empty ID gets a generated one; a zero CreatedAt is Now.
func (s *Sim) AddKey(userID string, k Key) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.userLocked(userID)
	s.defaultsLocked(userID, "key", &k.ID, &k.CreatedAt)
	if old, ok := u.keyByID[k.ID]; ok {
		old.Key = k
		return
	}
	nk := &key{Key: k}
	u.keys = append(u.keys, nk)
	u.keyByID[k.ID] = nk
}

// AddRequests records requests of a key at the given instants. Requests after Now stay
// invisible until the clock reaches them. It panics on an unknown user or key, because a
// silently dropped request would make a test pass for the wrong reason.
func (s *Sim) AddRequests(userID, keyID string, at ...time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.mustKeyLocked("AddRequests", userID, keyID)
	for _, t := range at {
		k.reqs = append(k.reqs, t.UnixNano())
	}
	slices.Sort(k.reqs)
}

// RemoveRequests takes back up to n of a key's requests in [from, to), the latest first, and
// returns how many it removed: the vendor correcting a counter downwards, after the fact. It
// panics on an unknown user or key.
func (s *Sim) RemoveRequests(userID, keyID string, from, to time.Time, n int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.mustKeyLocked("RemoveRequests", userID, keyID)
	removed := 0
	for i := len(k.reqs) - 1; i >= 0 && removed < n; i-- {
		if t := k.reqs[i]; t >= from.UnixNano() && t < to.UnixNano() {
			k.reqs = append(k.reqs[:i], k.reqs[i+1:]...)
			removed++
		}
	}
	return removed
}

// RevokeKey revokes a key: it leaves /api-keys, while its requests still count in
// /metrics/api-usage. It panics on an unknown user or key.
func (s *Sim) RevokeKey(userID, keyID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mustKeyLocked("RevokeKey", userID, keyID).Revoked = true
}

func (s *Sim) mustKeyLocked(op, userID, keyID string) *key {
	u, ok := s.byID[userID]
	if !ok {
		panic(fmt.Sprintf("simulator: %s: unknown user %s", op, userID))
	}
	k, ok := u.keyByID[keyID]
	if !ok {
		panic(fmt.Sprintf("simulator: %s: user %s has no key %s", op, userID, keyID))
	}
	return k
}

// SetLifetimeInWindows flips the meaning of from/to on the user's /api-keys listings to the
// "filter by last_used_at" reading: window listings show lifetime totals and list a key only
// when its last use falls in [from, to). The worker must detect this, not trust it.
func (s *Sim) SetLifetimeInWindows(userID string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.userLocked(userID).lifetimeInWindows = on
}

// AddTask adds a task with explicit fields (creating the user if needed); it does not
// progress by itself. An empty ID gets a generated one; a zero CreatedAt is Now. A task
// created after Now stays invisible until the clock reaches it.
func (s *Sim) AddTask(userID string, t Task) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.userLocked(userID)
	s.defaultsLocked(userID, "task", &t.ID, &t.CreatedAt)
	t.Results = cloneResults(t.Results)
	if old, ok := u.taskByID[t.ID]; ok {
		old.explicit, old.gen = t, nil
		return
	}
	nt := &task{explicit: t}
	u.tasks = append(u.tasks, nt)
	u.taskByID[t.ID] = nt
}

// UpdateTask changes a task through fn. A generated task is first frozen at its current
// state and from then on behaves like an added one (it no longer progresses). The ID cannot
// change. It panics on an unknown user or task.
func (s *Sim) UpdateTask(userID, taskID string, fn func(*Task)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.byID[userID]
	if !ok {
		panic(fmt.Sprintf("simulator: UpdateTask: unknown user %s", userID))
	}
	t, ok := u.taskByID[taskID]
	if !ok {
		panic(fmt.Sprintf("simulator: UpdateTask: user %s has no task %s", userID, taskID))
	}
	if t.gen != nil {
		t.explicit = t.freeze(s.cfg.Now())
		t.gen = nil
	}
	fn(&t.explicit)
	t.explicit.ID = taskID
	t.explicit.Results = cloneResults(t.explicit.Results)
}

// SetFault makes the user's requests fail as f says, replacing any earlier fault.
func (s *Sim) SetFault(userID string, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[userID] = &f
}

// ClearFault removes the user's fault.
func (s *Sim) ClearFault(userID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.faults, userID)
}

// OnRequest sets a hook called for every authenticated request, in the handler goroutine and
// before it is answered, so a test can change the data "mid-pass". The hook may call any
// method of s. nil removes it.
func (s *Sim) OnRequest(fn func(userID, path string, query url.Values)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onRequest = fn
}

// Hits returns how many requests were received whose URL path contains path, whatever they
// were answered with.
func (s *Sim) Hits(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for p, c := range s.hits {
		if strings.Contains(p, path) {
			n += c
		}
	}
	return n
}

// KeyRequests returns the key's requests in [from, to) as of Now; a zero from or to leaves
// that end open. Unknown users or keys have none.
func (s *Sim) KeyRequests(userID, keyID string, from, to time.Time) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.byID[userID]
	if !ok {
		return 0
	}
	k, ok := u.keyByID[keyID]
	if !ok {
		return 0
	}
	return k.count(from, to, s.cfg.Now())
}

// Keys returns every key of the user, revoked ones included, in the order they were added.
func (s *Sim) Keys(userID string) []KeyState {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.byID[userID]
	if !ok {
		return nil
	}
	now := s.cfg.Now()
	out := make([]KeyState, 0, len(u.keys))
	for _, k := range u.keys {
		out = append(out, KeyState{
			ID:         k.ID,
			Name:       k.Name,
			Purpose:    k.Purpose,
			Revoked:    k.Revoked,
			Lifetime:   k.count(time.Time{}, time.Time{}, now),
			LastUsedAt: k.lastUsed(now),
			CreatedAt:  k.CreatedAt,
		})
	}
	return out
}

// Tasks returns the user's tasks as the wire would show them now, in the listing's order
// (newest first, ties by id).
func (s *Sim) Tasks(userID string) []TaskState {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.byID[userID]
	if !ok {
		return nil
	}
	now := s.cfg.Now()
	views := u.visibleTasks(now)
	out := make([]TaskState, len(views))
	for i, v := range views {
		out[i] = v.TaskState
		out[i].Results = cloneResults(v.Results)
		out[i].OmitJobStatus = v.omitJobStatus
	}
	return out
}

// count returns the requests in [from, to) that happened by now; zero times are open ends.
func (k *key) count(from, to, now time.Time) int64 {
	hi := now.UnixNano() + 1
	if !to.IsZero() && to.UnixNano() < hi {
		hi = to.UnixNano()
	}
	lo := 0
	if !from.IsZero() {
		lo = sort.Search(len(k.reqs), func(i int) bool { return k.reqs[i] >= from.UnixNano() })
	}
	end := sort.Search(len(k.reqs), func(i int) bool { return k.reqs[i] >= hi })
	if end <= lo {
		return 0
	}
	return int64(end - lo)
}

// lastUsed returns the key's newest request by now, or nil.
func (k *key) lastUsed(now time.Time) *time.Time {
	i := sort.Search(len(k.reqs), func(i int) bool { return k.reqs[i] > now.UnixNano() })
	if i == 0 {
		return nil
	}
	t := time.Unix(0, k.reqs[i-1]).UTC()
	return &t
}

// visibleTasks returns the tasks created by now, newest first, ties by id.
func (u *user) visibleTasks(now time.Time) []taskView {
	views := make([]taskView, 0, len(u.tasks))
	for _, t := range u.tasks {
		if t.createdAt().After(now) {
			continue
		}
		views = append(views, t.view(now))
	}
	sort.Slice(views, func(i, j int) bool {
		a, b := views[i], views[j]
		if !a.CreatedAt.Equal(b.CreatedAt) {
			return a.CreatedAt.After(b.CreatedAt)
		}
		return a.ID < b.ID
	})
	return views
}

func cloneResults(m map[string]int64) map[string]int64 {
	if m == nil {
		return nil
	}
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

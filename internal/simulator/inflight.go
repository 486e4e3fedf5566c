package simulator

import (
	"cmp"
	"net/url"
	"slices"
	"strings"
)

// Request is one request the simulator served, for tests of how the worker spreads its reads:
// Start and End are positions in one sequence of events (every request's arrival and its end,
// across users), so "b started after a ended" is b.Start > a.End, whatever the machine's speed.
type Request struct {
	UserID string
	Path   string // the URL path, /api/v1/... included
	Query  url.Values
	Start  int64 // the arrival's place in the event sequence
	End    int64 // the end's place in the event sequence; 0 while the request is in flight
	Status int   // the status it was answered with; 0 when the client went away first
}

// Overlaps reports whether r and o were in flight at the same time.
func (r Request) Overlaps(o Request) bool {
	return r.Start < o.endOrLast() && o.Start < r.endOrLast()
}

// Before reports whether r ended before o started.
func (r Request) Before(o Request) bool { return r.End != 0 && r.End < o.Start }

func (r Request) endOrLast() int64 {
	if r.End == 0 {
		return 1<<63 - 1
	}
	return r.End
}

// Lifetime reports whether r is a lifetime key listing (no from or to).
func (r Request) Lifetime() bool {
	return strings.HasSuffix(r.Path, "/api-keys") && r.Query.Get("from") == "" && r.Query.Get("to") == ""
}

// Window reports whether r reads a time window: a key listing or per-purpose totals with from
// or to.
func (r Request) Window() bool {
	if !strings.HasSuffix(r.Path, "/api-keys") && !strings.HasSuffix(r.Path, "/metrics/api-usage") {
		return false
	}
	return r.Query.Get("from") != "" || r.Query.Get("to") != ""
}

// TaskPage reports whether r lists tasks.
func (r Request) TaskPage() bool { return strings.HasSuffix(r.Path, "/tasks") }

// flight tracks the requests in flight and, when Config.RecordRequests is set, every request's
// interval. It is guarded by Sim.mu.
type flight struct {
	now, peak int
	seq       int64
	log       []Request
}

// begin counts a request in and returns its index in the log (-1 when not recorded).
func (s *Sim) begin(userID, path string, q url.Values) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := &s.flight
	f.now++
	f.peak = max(f.peak, f.now)
	f.seq++
	if !s.cfg.RecordRequests {
		return -1
	}
	f.log = append(f.log, Request{UserID: userID, Path: path, Query: q, Start: f.seq})
	return len(f.log) - 1
}

// end counts the request out.
func (s *Sim) end(i, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := &s.flight
	f.now--
	f.seq++
	if i >= 0 {
		f.log[i].End, f.log[i].Status = f.seq, status
	}
}

// InFlight returns the requests in flight now and the most there were at once since the start
// or the last ResetPeak, every request counted (answered with an error or not) from its arrival
// to its answer.
func (s *Sim) InFlight() (now, peak int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flight.now, s.flight.peak
}

// ResetPeak starts the peak over from the requests in flight now.
func (s *Sim) ResetPeak() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flight.peak = s.flight.now
}

// Requests returns the user's recorded requests in the order they arrived (Config.RecordRequests;
// none without it).
func (s *Sim) Requests(userID string) []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Request
	for _, r := range s.flight.log {
		if r.UserID == userID {
			out = append(out, r)
		}
	}
	return out
}

// Rounds is the length of the longest chain in reqs of requests each started after the one
// before it ended: the round trips the requests took one after another, at the least. Requests
// sent one after another make as many rounds as requests; requests sent together, one.
func Rounds(reqs []Request) int {
	depth := make([]int, len(reqs))
	longest := 0
	// A request can only follow one that started before it: visit them by their start.
	order := make([]int, len(reqs))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(reqs[a].Start, reqs[b].Start) })
	for n, i := range order {
		depth[i] = 1
		for _, j := range order[:n] {
			if reqs[j].Before(reqs[i]) {
				depth[i] = max(depth[i], depth[j]+1)
			}
		}
		longest = max(longest, depth[i])
	}
	return longest
}

// RequestLog returns every recorded request (Config.RecordRequests), in the order they arrived.
func (s *Sim) RequestLog() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.flight.log)
}

// ResetRequests forgets the recorded requests and starts the peak over, for a test or benchmark
// that measures one run after another.
func (s *Sim) ResetRequests() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flight.log = nil
	s.flight.peak = s.flight.now
}

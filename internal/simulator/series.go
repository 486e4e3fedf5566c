package simulator

import (
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"
)

// TaskSeries is a large, static task history computed from its index rather than stored: task i
// was created at Newest − i·Step, finished a minute later (so Newest should be a minute in the
// past), and got a result for every one of its Emails. The scale benchmarks use it for users with 100,000 tasks, whose listing through the
// general path would re-sort the whole history on every page.
type TaskSeries struct {
	N      int           // number of tasks
	Newest time.Time     // creation time of task 0; truncated to the microsecond
	Step   time.Duration // time between consecutive tasks; at least a microsecond
	Emails int           // emails per task, every one with a result; default 10
}

// Series serves a simulator whose users may carry task series. It answers GET /tasks and
// GET /tasks/{id} of a series user from the series (in the listing's order: newest first), and
// everything else exactly as the simulator's own Handler, through the same steps (authentication,
// OnRequest, latency, faults, Hits).
type Series struct {
	sim *Sim

	mu     sync.Mutex
	byUser map[string]TaskSeries
}

// NewSeries wraps sim.
func NewSeries(sim *Sim) *Series {
	return &Series{sim: sim, byUser: make(map[string]TaskSeries)}
}

// Add gives the user (created when missing) the task series ts, replacing any earlier series.
// The user's tasks added through the simulator are not listed while it has a series.
func (x *Series) Add(userID string, ts TaskSeries) {
	if ts.Emails <= 0 {
		ts.Emails = 10
	}
	ts.Step = max(ts.Step.Truncate(time.Microsecond), time.Microsecond)
	ts.Newest = ts.Newest.UTC().Truncate(time.Microsecond)
	x.sim.AddUser(userID)
	x.mu.Lock()
	defer x.mu.Unlock()
	x.byUser[userID] = ts
}

func (x *Series) get(userID string) (TaskSeries, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	ts, ok := x.byUser[userID]
	return ts, ok
}

// Handler serves the API under /api/v1, series users' tasks from their series.
func (x *Series) Handler() http.Handler {
	s := x.sim
	mux := http.NewServeMux()
	mux.Handle("GET /api/v1/tasks", s.serve(x.listTasks))
	mux.Handle("GET /api/v1/tasks/{id}", s.serve(x.getTask))
	mux.Handle("/", s.Handler())
	return mux
}

// createdAt is task i's creation time.
func (ts TaskSeries) createdAt(i int) time.Time {
	return ts.Newest.Add(-time.Duration(i) * ts.Step)
}

// task returns task i as an added task.
func (ts TaskSeries) task(userID string, i int) *task {
	created := ts.createdAt(i)
	finished := created.Add(time.Minute)
	return &task{explicit: Task{
		ID:         deriveUUID(0, fmt.Sprintf("series/%s/%d", userID, i)),
		CreatedAt:  created,
		Emails:     ts.Emails,
		Done:       ts.Emails,
		Finished:   true,
		FinishedAt: &finished,
	}}
}

// listTasks is the simulator's listing over a series: created_after < created_at <
// created_before, both exclusive, only tasks created by now, newest first. Found by binary
// search, so a page costs its own size whatever the history's.
func (x *Series) listTasks(u *user, r *http.Request, now time.Time) reply {
	ts, ok := x.get(u.id)
	if !ok {
		return x.sim.listTasks(u, r, now)
	}
	times, limit, offset, bad := listQuery(r)
	if len(bad) > 0 {
		return fieldsReply(bad)
	}
	after, before := times[0], times[1]
	// Creation times fall with the index: [lo, hi) is the matching run.
	lo := sort.Search(ts.N, func(i int) bool {
		c := ts.createdAt(i)
		return !c.After(now) && (before.IsZero() || c.Before(before))
	})
	hi := ts.N
	if !after.IsZero() {
		hi = sort.Search(ts.N, func(i int) bool { return !ts.createdAt(i).After(after) })
	}
	hi = max(hi, lo)
	out := wireTaskList{Count: hi - lo, Limit: limit, Offset: offset, Tasks: []wireTask{}}
	for i := lo + offset; i < hi && i < lo+offset+limit; i++ {
		out.Tasks = append(out.Tasks, summary(u.id, ts.task(u.id, i).view(now)))
	}
	return reply{status: http.StatusOK, body: out}
}

// getTask finds a series task by id by scanning the series: the worker reads single tasks
// rarely, and a benchmark that does so should see it.
func (x *Series) getTask(u *user, r *http.Request, now time.Time) reply {
	ts, ok := x.get(u.id)
	if !ok {
		return x.sim.getTask(u, r, now)
	}
	id := r.PathValue("id")
	for i := range ts.N {
		t := ts.task(u.id, i)
		if t.explicit.ID != id || t.createdAt().After(now) {
			continue
		}
		v := t.view(now)
		return reply{status: http.StatusOK, body: wireTaskDetail{
			wireTask:   summary(u.id, v),
			StartedAt:  stampPtr(v.startedAt),
			FinishedAt: stampPtr(v.FinishedAt),
			Jobs:       jobs(v),
		}}
	}
	return errReply(http.StatusNotFound, "task not found")
}

package syncer

import (
	"fmt"
	"hash/fnv"
)

// Bounds of one task listing pass (the contract leaves them to the worker; docs/scale.md).
const (
	// MaxTaskPagesDefault caps the pages one pass may read: 10,000 pages of 100 tasks, a million
	// tasks. A claimed count above what the cap can list is absurd.
	MaxTaskPagesDefault = 10_000
	// taskStallPagesDefault is how many consecutive non-empty pages may bring no id the pass had
	// not seen before it stops: a legitimate listing repeats a page only when many tasks vanish
	// mid-pass, never several in a row.
	taskStallPagesDefault = 3
	// TaskChunkPagesDefault is how many task pages one chunk transaction applies.
	TaskChunkPagesDefault = 10
)

// Error kinds a bounded task pass stops with; sync_state.last_error_kind shows them.
const (
	KindTasksNoProgress  = "tasks_no_progress"
	KindTasksPageCap     = "tasks_page_cap"
	KindTasksCountAbsurd = "tasks_count_absurd"
)

// PagingError stops a task pass that cannot end well: pages that bring nothing new, more pages
// than the cap, or a count no pass could list. Nothing of the pass moves the watermark.
type PagingError struct {
	Kind   string
	Pages  int
	Count  int
	Detail string
}

func (e *PagingError) Error() string {
	return fmt.Sprintf("task listing stopped (%s) after %d pages: %s", e.Kind, e.Pages, e.Detail)
}

// idSet remembers the ids a pass has seen as 64-bit hashes: 8 bytes an id instead of the id,
// and bounded by the page cap. It only decides whether a page brought something new (a rare
// collision makes a page look one task less new); no task is ever dropped because of it.
type idSet map[uint64]struct{}

// add reports whether id is new to the set.
func (s idSet) add(id string) bool {
	h := fnv.New64a()
	_, _ = h.Write([]byte(id))
	k := h.Sum64()
	if _, ok := s[k]; ok {
		return false
	}
	s[k] = struct{}{}
	return true
}

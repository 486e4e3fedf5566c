package simulator

import (
	"slices"
	"strings"
	"time"
)

// newestFirst orders tasks as the listing does: newest first, ties by id.
func newestFirst(a, b *task) int {
	if c := b.createdAt().Compare(a.createdAt()); c != 0 {
		return c
	}
	return strings.Compare(a.explicit.ID, b.explicit.ID)
}

// listPage returns how many tasks match created_after < created_at < created_before (zero
// bounds are open) among those created by now, and the views of matches [offset, offset+limit).
// Only the page's tasks are rendered, and the order is kept in u.tasks (re-sorted only when an
// added or updated task broke it), so a page costs a scan of the user's tasks, not a render and
// sort of all of them: a user with 100,000 tasks lists at the speed a benchmark needs.
func (u *user) listPage(now, after, before time.Time, offset, limit int) (int, []taskView) {
	if !slices.IsSortedFunc(u.tasks, newestFirst) {
		slices.SortStableFunc(u.tasks, newestFirst)
	}
	count := 0
	var page []taskView
	for _, t := range u.tasks {
		c := t.createdAt()
		if c.After(now) || (!after.IsZero() && !c.After(after)) || (!before.IsZero() && !c.Before(before)) {
			continue
		}
		if count >= offset && count < offset+limit {
			page = append(page, t.view(now))
		}
		count++
	}
	return count, page
}

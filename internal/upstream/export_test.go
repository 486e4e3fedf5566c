package upstream

import (
	"context"
	"errors"
	"net/url"
	"strings"
)

// KindOf returns the Kind of the *Error in err's chain, or 0 when there is none.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
}

// GetTask reads one task. The response carries every email's job; only the task and its
// metrics are kept.
func (c *Client) GetTask(ctx context.Context, userID, taskID string) (Task, error) {
	cl := call{op: "get task", userID: userID, path: "/tasks/" + url.PathEscape(taskID)}
	if strings.TrimSpace(taskID) == "" {
		return Task{}, c.newError(cl, KindPermanent, "no task id")
	}
	return fetch(ctx, c, cl, func(b []byte) (Task, error) {
		t, err := decodeTaskDetail(b)
		if err != nil {
			return t, err
		}
		return ownTask(t, userID)
	})
}

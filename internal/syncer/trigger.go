package syncer

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"github.com/usage-sync/usage-sync/internal/store"
)

// Trigger is one on-demand sync of a user: a webhook delivery or a public.request_sync().
type Trigger struct {
	UserID string
	Kind   string // "webhook" | "request", for the logs
	// SkipBackoff syncs the user whatever its failure backoff: request_sync() is the
	// dashboard's retry button. A webhook leaves it false and respects the backoff.
	SkipBackoff bool
}

// RunTriggered syncs one user for a trigger, through the same single-user RunCycle as --user,
// unless the trigger may not take the user now: another trigger (on any replica) took it less
// than TriggerMinInterval ago, or its failure backoff is not over and the trigger respects it.
// taken reports which; a refused trigger costs one statement and changes nothing but the log.
// A user not in profiles is ErrUnknownUser.
func (s *Syncer) RunTriggered(ctx context.Context, t Trigger) (sum Summary, taken bool, err error) {
	req := store.TriggerRequest{UserID: t.UserID, MinInterval: s.opts.TriggerMinInterval, RespectBackoff: !t.SkipBackoff, Clock: s.clock}
	verdict, err := s.st.TakeTrigger(ctx, req)
	if err == nil && verdict == store.TriggerNoUser {
		// Not enrolled yet: enrol this user alone (nobody else), then ask again.
		if _, err = s.st.Enrol(ctx, s.clock, t.UserID); err == nil {
			verdict, err = s.st.TakeTrigger(ctx, req)
		}
	}
	switch {
	case err != nil:
		return Summary{}, false, fmt.Errorf("%s trigger: %w", t.Kind, err)
	case verdict == store.TriggerNoUser:
		return Summary{}, false, fmt.Errorf("user %s: %w", t.UserID, ErrUnknownUser)
	case verdict != store.TriggerTaken:
		// Debug: a flood of triggers must not become a flood of log lines.
		s.log.Debug("sync.trigger.refused", zap.String("user_id", t.UserID), zap.String("trigger", t.Kind),
			zap.String("why", verdict.String()), zap.Duration("min_interval", s.opts.TriggerMinInterval))
		return Summary{}, false, nil
	}
	sum, err = s.RunCycle(ctx, CycleOptions{UserID: t.UserID, Trigger: t.Kind})
	return sum, true, err
}

package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// KeyTotalsOutside sums each of the user's per-key day records (usage_sync.key_days, the worker's
// own: never the mirror) on every day except days: what a
// resync's guard adds the re-read windows to before comparing with a key's lifetime total (as a
// sync adds its windows to the rows before the first day it reads, UserState.SettledKeyTotals).
func (s *Store) KeyTotalsOutside(ctx context.Context, user string, days []time.Time) (map[string]int64, error) {
	utc := make([]time.Time, len(days))
	for i, d := range days {
		utc[i] = d.UTC()
	}
	var raw []byte
	err := s.pool.QueryRow(ctx, `
		select coalesce(jsonb_object_agg(k, n), '{}'::jsonb) from (
			select key_id as k, sum(count)::bigint as n from usage_sync.key_days
			where user_id = $1 and day <> all($2::timestamptz[])
			group by key_id) t`, user, utc).Scan(&raw)
	if err != nil {
		return nil, fmt.Errorf("load usage of %s outside the resynced days: %w", user, err)
	}
	out := map[string]int64{}
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("load usage of %s outside the resynced days: %w", user, err)
	}
	return out, nil
}

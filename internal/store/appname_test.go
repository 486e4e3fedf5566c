package store_test

import (
	"context"
	"strings"
	"testing"

	"github.com/usage-sync/usage-sync/internal/pgtest"
	"github.com/usage-sync/usage-sync/internal/store"
)

// pg_stat_activity names the worker behind its connections, in either pool mode; a
// DATABASE_URL that sets application_name itself keeps it.
func TestApplicationNameInPgStatActivity(t *testing.T) {
	t.Parallel()
	dsn := pgtest.EmptyDB(t, pgtest.Plain)
	db := pgtest.Pool(t, dsn)
	for _, tt := range []struct {
		name, dsn, mode, workerID, want string
	}{
		{"session", dsn, "session", "box-s", "usage-sync box-s"},
		{"transaction", dsn, "transaction", "box-t", "usage-sync box-t"},
		{"the URL's own", dsn + "&application_name=ops-console", "session", "box-u", "ops-console"},
	} {
		st, err := store.Open(context.Background(), tt.dsn, store.Options{MaxConns: 1, PoolMode: tt.mode, ApplicationName: store.ApplicationName(tt.workerID)})
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		var n int
		err = db.QueryRow(context.Background(),
			`select count(*) from pg_stat_activity where datname = current_database() and application_name = $1`, tt.want).Scan(&n)
		st.Close()
		if err != nil || n != 1 {
			t.Errorf("%s: %d connections named %q in pg_stat_activity (%v), want the store's one", tt.name, n, tt.want, err)
		}
	}
	// PostgreSQL keeps 63 bytes: a long worker id is cut there, on a rune boundary.
	long := store.ApplicationName(strings.Repeat("é", 40))
	if len(long) > 63 || !strings.HasPrefix(long, "usage-sync éé") || !strings.HasSuffix(long, "é") {
		t.Errorf("ApplicationName(long) = %q (%d bytes), want at most 63, cut between runes", long, len(long))
	}
}

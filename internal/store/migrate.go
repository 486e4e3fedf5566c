package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/usage-sync/usage-sync/migrations"
)

// ErrSchemaOutdated means the database's schema is older than this binary needs.
var ErrSchemaOutdated = errors.New("database schema is out of date")

// migrationLock serialises migrators across processes. It is a transaction-level advisory lock,
// the kind that survives Supabase's transaction pooler.
const migrationLock = 0x75736167 // "usag"

type migration struct {
	version int
	name    string
	sql     string
}

func loadMigrations() ([]migration, error) {
	entries, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, name := range entries {
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: name must start with a number and an underscore", name)
		}
		body, err := fs.ReadFile(migrations.FS, name)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: strings.TrimSuffix(name, ".sql"), sql: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	return out, nil
}

// SchemaVersion is the newest migration embedded in this binary.
func SchemaVersion() int {
	ms, err := loadMigrations()
	if err != nil || len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}

// Migrate applies every embedded migration the database lacks, each in its own transaction
// together with its version row, and returns the names it applied. Two processes may run it at
// once: the second waits for the first and then finds nothing to do.
//
// Before changing anything it checks the dashboard's tables it adopted (checkExposures); after
// the migrations it sets the API roles' privileges on every worker object (hardenPrivileges),
// on every run, so that objects created since, by any migration, are covered.
func (s *Store) Migrate(ctx context.Context) ([]string, error) {
	ms, err := loadMigrations()
	if err != nil {
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	if err := s.checkExposures(ctx); err != nil {
		return nil, err
	}
	var applied []string
	for _, m := range ms {
		did := false
		// No bound but ctx's: a migration may build an index on a large table, and it may
		// wait for another migrate's lock.
		err := s.inTxWithin(ctx, 0, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `select pg_advisory_xact_lock($1)`, int64(migrationLock)); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `
				create schema if not exists usage_sync;
				create table if not exists usage_sync.schema_migrations (
					version    integer primary key,
					name       text not null,
					applied_at timestamptz not null default now()
				)`); err != nil {
				return err
			}
			var exists bool
			if err := tx.QueryRow(ctx, `select exists (select 1 from usage_sync.schema_migrations where version = $1)`, m.version).Scan(&exists); err != nil {
				return err
			}
			if exists {
				return nil
			}
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `insert into usage_sync.schema_migrations (version, name) values ($1, $2)`, m.version, m.name); err != nil {
				return err
			}
			did = true
			return nil
		})
		if err != nil {
			return applied, fmt.Errorf("apply migration %s: %w", m.name, err)
		}
		if did {
			applied = append(applied, m.name)
			s.log.Info("migrate.applied", zap.String("migration", m.name))
		}
	}
	if err := s.hardenPrivileges(ctx); err != nil {
		return applied, fmt.Errorf("set the API roles' privileges: %w", err)
	}
	return applied, nil
}

// appliedVersion is the newest migration recorded in the database (0 when none).
func (s *Store) appliedVersion(ctx context.Context) (int, error) {
	var present bool
	if err := s.pool.QueryRow(ctx, `select to_regclass('usage_sync.schema_migrations') is not null`).Scan(&present); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	if !present {
		return 0, nil
	}
	var v int
	if err := s.pool.QueryRow(ctx, `select coalesce(max(version), 0) from usage_sync.schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}

// CheckSchema refuses a database whose schema is older than this binary needs.
func (s *Store) CheckSchema(ctx context.Context) error {
	have, err := s.appliedVersion(ctx)
	if err != nil {
		return err
	}
	if want := SchemaVersion(); have < want {
		return fmt.Errorf("%w: database is at version %d, this binary needs %d: run `usage-sync migrate`", ErrSchemaOutdated, have, want)
	}
	return nil
}

package cli

import (
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/usage-sync/usage-sync/internal/store"
)

// hint is the one human line a runtime failure prints on stderr beside its JSON log line: what
// is wrong and the command or check that fixes it. "" when there is nothing specific to say.
func hint(err error, dsn string) string {
	cfg, perr := pgconn.ParseConfig(dsn)
	where, user, db := "the database host", "", ""
	if perr == nil {
		where = net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
		user, db = cfg.User, cfg.Database
	}
	var pe *pgconn.PgError
	switch {
	case errors.Is(err, store.ErrSchemaOutdated):
		return "the database schema is older than this binary: run `usage-sync migrate`"
	case errors.As(err, &pe) && pe.Code == "3D000":
		host, port := "", ""
		if perr == nil {
			host, port = cfg.Host, strconv.Itoa(int(cfg.Port))
		}
		return fmt.Sprintf("database %q does not exist: create it with `createdb -h %s -p %s -U %s %s`, then run `usage-sync migrate`",
			db, host, port, user, db)
	case errors.As(err, &pe) && (pe.Code == "28P01" || pe.Code == "28000"):
		return fmt.Sprintf("PostgreSQL at %s refused user %q: check the user and password in DATABASE_URL", where, user)
	case errors.As(err, &pe) && pe.Code == "42P01":
		return "a table is missing: run `usage-sync migrate`"
	case store.IsUnavailable(err):
		return fmt.Sprintf("cannot reach PostgreSQL at %s: is PostgreSQL running on %s, and is DATABASE_URL right?", where, where)
	}
	return ""
}

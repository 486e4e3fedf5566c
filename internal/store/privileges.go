package store

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
)

// The worker's objects in schema public, in one place. Everything in schema usage_sync is the
// worker's too, whatever its name: the privilege step finds those in the catalog.
var (
	// workerTables are the public tables only the worker creates.
	workerTables = []string{"sync_state", "credit_ledger"}
	// dashboardTables are the dashboard's tables the worker reads or writes. The worker creates
	// one only where it is missing, and then marks it with the read policy usage_sync.protect()
	// adds (readOwnPolicy): a marked one is the worker's and is hardened like workerTables; an
	// unmarked one was adopted, and migrate checks it instead of changing its privileges.
	dashboardTables = []string{"profiles", "user_credits", "tasks", "api_usage", "api_keys"}
	// workerFunctions are the public functions the worker creates; requestSync is the only one
	// an API role may execute.
	workerFunctions = []string{requestSync}
)

const (
	requestSync   = "request_sync()"
	readOwnPolicy = "usage_sync_read_own"
	// readsOnly is the adopted table the worker only reads: an API role reading it without
	// row-level security reads nothing the worker wrote.
	readsOnly = "profiles"
)

// apiRoles are the roles PostgREST switches to for a request; "public" (every role) counts too,
// since what it holds they hold.
var apiRoles = []string{"anon", "authenticated"}

// grantsQuery lists, for every worker object and every API role (and PUBLIC), the privileges
// held and the ones the contract grants: authenticated may select its own rows of a worker
// table that has row-level security, and execute request_sync(); nothing else, for anyone.
// Column privileges count (as "UPDATE (col)"): revoke all on a table removes them too.
const grantsQuery = `
with grantee as (
  select oid, rolname::text as name from pg_roles where rolname = any($3::text[])
  union all select 0, 'public'
),
worker_rel as (
  select to_regclass('public.' || quote_ident(n)) as oid from unnest($1::text[]) n
  union
  select p.polrelid from pg_policy p
  where p.polname = $5 and p.polrelid in (select to_regclass('public.' || quote_ident(n)) from unnest($2::text[]) n)
),
obj as (
  select 'schema' as kind, n.oid, quote_ident(n.nspname) as name,
         coalesce(n.nspacl, acldefault('n'::"char", n.nspowner)) as acl, n.nspowner as owner, false as own_rows
  from pg_namespace n where n.nspname = 'usage_sync'
  union all
  select case when c.relkind = 'S' then 'sequence' else 'table' end, c.oid,
         quote_ident(c.relnamespace::regnamespace::text) || '.' || quote_ident(c.relname),
         coalesce(c.relacl, acldefault((case when c.relkind = 'S' then 's' else 'r' end)::"char", c.relowner)),
         c.relowner, c.relrowsecurity and c.oid in (select oid from worker_rel)
  from pg_class c
  where c.relkind in ('r', 'p', 'v', 'm', 'f', 'S')
    and (c.relnamespace = 'usage_sync'::regnamespace
         or c.oid in (select oid from worker_rel)
         or c.oid in (select d.objid from pg_depend d
                      where d.classid = 'pg_class'::regclass and d.refclassid = 'pg_class'::regclass
                        and d.deptype in ('a', 'i') and d.refobjid in (select oid from worker_rel)))
  union all
  select 'function', p.oid,
         quote_ident(p.pronamespace::regnamespace::text) || '.' || quote_ident(p.proname) || '(' || pg_get_function_identity_arguments(p.oid) || ')',
         coalesce(p.proacl, acldefault('f'::"char", p.proowner)),
         p.proowner, false
  from pg_proc p
  where p.pronamespace = 'usage_sync'::regnamespace
     or p.oid in (select to_regprocedure('public.' || f) from unnest($4::text[]) f)
)
select o.kind, o.name, g.name, pg_get_userbyid(o.owner),
       array(select distinct a.privilege_type from aclexplode(o.acl) a where a.grantee = g.oid
             union
             select distinct a.privilege_type || ' (' || att.attname || ')'
             from pg_attribute att, aclexplode(att.attacl) a
             where o.kind = 'table' and att.attrelid = o.oid and att.attacl is not null and a.grantee = g.oid
             order by 1) as held,
       case when g.name = 'authenticated' and o.kind = 'table' and o.own_rows then array['SELECT']
            when g.name = 'authenticated' and o.kind = 'function' and o.oid = to_regprocedure('public.' || $6) then array['EXECUTE']
            else array[]::text[] end as want
from obj o cross join grantee g
order by 1, 2, 3`

// grant is one object's privileges for one grantee.
type grant struct {
	kind, object, grantee, owner string
	held, want                   []string
}

// extra is what the grantee holds beyond what it may.
func (g grant) extra() []string { return minus(g.held, g.want) }

// missing is what the grantee may hold and lacks.
func (g grant) missing() []string { return minus(g.want, g.held) }

// list renders privileges for a message.
func list(ps []string) string {
	if len(ps) == 0 {
		return "nothing"
	}
	return strings.Join(ps, ", ")
}

// minus is a without the elements of b.
func minus(a, b []string) []string {
	var out []string
	for _, p := range a {
		if !slices.Contains(b, p) {
			out = append(out, p)
		}
	}
	return out
}

func readGrants(ctx context.Context, tx pgx.Tx) ([]grant, error) {
	rows, err := tx.Query(ctx, grantsQuery, workerTables, dashboardTables, apiRoles, workerFunctions, readOwnPolicy, requestSync)
	if err != nil {
		return nil, fmt.Errorf("read the worker objects' privileges: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (grant, error) {
		var g grant
		return g, r.Scan(&g.kind, &g.object, &g.grantee, &g.owner, &g.held, &g.want)
	})
}

// PrivilegeError means an API role still holds a right on a worker object after migrate
// revoked it: REVOKE by a role that does not own the object removes only that role's own grants.
type PrivilegeError struct {
	Left []string // one line per object and grantee
}

func (e *PrivilegeError) Error() string {
	return "API roles keep rights on worker objects that migrate could not revoke:\n  " + strings.Join(e.Left, "\n  ")
}

// hardenPrivileges gives the API roles exactly what the contract says on every worker object,
// whatever default privileges granted them at creation: it revokes everything else and grants
// what is missing, touching only objects whose privileges differ. Then it checks the result.
func (s *Store) hardenPrivileges(ctx context.Context) error {
	revoked, granted := 0, 0
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `select pg_advisory_xact_lock($1)`, int64(migrationLock)); err != nil {
			return err
		}
		gs, err := readGrants(ctx, tx)
		if err != nil {
			return err
		}
		for _, g := range gs {
			if len(g.extra()) > 0 {
				if _, err := tx.Exec(ctx, fmt.Sprintf("revoke all on %s %s from %s", g.kind, g.object, g.grantee)); err != nil {
					return fmt.Errorf("revoke the rights of %s on %s %s: %w", g.grantee, g.kind, g.object, err)
				}
				revoked++
				g.held = nil // revoke all took the wanted ones too
			}
			if m := g.missing(); len(m) > 0 {
				if _, err := tx.Exec(ctx, fmt.Sprintf("grant %s on %s %s to %s", strings.Join(m, ", "), g.kind, g.object, g.grantee)); err != nil {
					return fmt.Errorf("grant %s on %s %s to %s: %w", strings.Join(m, ", "), g.kind, g.object, g.grantee, err)
				}
				granted++
			}
		}
		gs, err = readGrants(ctx, tx)
		if err != nil {
			return err
		}
		var left []string
		for _, g := range gs {
			if x, m := g.extra(), g.missing(); len(x) > 0 || len(m) > 0 {
				left = append(left, fmt.Sprintf("%s %s: %s holds %s, may hold %s; it belongs to role %s: run migrate as %s (or a member of it)",
					g.kind, g.object, g.grantee, list(g.held), list(g.want), g.owner, g.owner))
			}
		}
		if len(left) > 0 {
			return &PrivilegeError{Left: left}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if revoked+granted > 0 {
		s.log.Info("migrate.privileges", zap.Int("revoked", revoked), zap.Int("granted", granted))
	}
	return nil
}

// exposureQuery lists, for every adopted dashboard table (one the worker did not create) and
// every API role, what the role can do there: table- or column-level, its own grants or PUBLIC's.
const exposureQuery = `
with role as (select oid, rolname::text as name from pg_roles where rolname = any($2::text[])),
adopted as (
  select c.oid, 'public.' || quote_ident(c.relname) as qname, c.relname::text as name, c.relrowsecurity
  from unnest($1::text[]) n
  join pg_class c on c.oid = to_regclass('public.' || quote_ident(n))
  where not exists (select 1 from pg_policy p where p.polrelid = c.oid and p.polname = $3)
),
priv(name, col) as (values ('SELECT', true), ('INSERT', true), ('UPDATE', true), ('DELETE', false),
                          ('TRUNCATE', false), ('TRIGGER', false), ('REFERENCES', true))
select a.qname, a.name, a.relrowsecurity, r.name,
       array(select p.name from priv p
             where has_table_privilege(r.oid, a.oid, p.name)
                or (p.col and has_any_column_privilege(r.oid, a.oid, p.name))) as held,
       array(select p.name from priv p
             where has_table_privilege('public', a.oid, p.name)
                or (p.col and has_any_column_privilege('public', a.oid, p.name))) as public_held
from adopted a cross join role r
order by 1, 4`

// triggerQuery lists triggers on the worker's and the adopted tables whose function an API role
// wrote: it owns the function (or can act as its owner), or the function lives in a temporary
// schema, which any session may create. The worker's charge runs such a trigger with the
// worker's rights.
const triggerQuery = `
with role as (select oid, rolname::text as name from pg_roles where rolname = any($2::text[]))
select 'public.' || quote_ident(c.relname), quote_ident(t.tgname),
       quote_ident(n.nspname) || '.' || quote_ident(p.proname) || '(' || pg_get_function_identity_arguments(p.oid) || ')',
       pg_get_userbyid(p.proowner)
from pg_trigger t
join pg_class c on c.oid = t.tgrelid
join pg_proc p on p.oid = t.tgfoid
join pg_namespace n on n.oid = p.pronamespace
where not t.tgisinternal
  and t.tgrelid in (select to_regclass('public.' || quote_ident(x)) from unnest($1::text[]) x)
  and (n.nspname like 'pg\_temp\_%' or exists (select 1 from role r where pg_has_role(r.oid, p.proowner, 'MEMBER')))
order by 1, 2`

// Exposure is one way an API role can reach an adopted dashboard table around row-level
// security, or one trigger an API role attached to a table the worker writes.
type Exposure struct {
	Table      string   // e.g. public.user_credits
	Role       string   // anon or authenticated; for a trigger, its function's owner
	Privileges []string // e.g. UPDATE, TRUNCATE; for a trigger, "TRIGGER <name>"
	Why        string
	Fix        string // the SQL that closes it
}

func (e Exposure) String() string {
	return fmt.Sprintf("%s: role %s %s; fix: %s", e.Table, e.Role, e.Why, e.Fix)
}

// ExposedError means migrate found exposures and changed nothing.
type ExposedError struct {
	Exposures []Exposure
}

func (e *ExposedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d exposure(s) of the dashboard's tables to the API roles; migrate changed nothing:", len(e.Exposures))
	for _, x := range e.Exposures {
		b.WriteString("\n  " + x.String())
	}
	b.WriteString("\nrun each fix (or, where the dashboard needs the access, enable row level security with own-row policies instead), " +
		"then migrate again; MIGRATE_ALLOW_EXPOSED=true migrates anyway (docs/supabase.md)")
	return b.String()
}

// Exposures inspects the dashboard's tables the worker adopted and the triggers on every table
// it reads or writes. It changes nothing.
func (s *Store) Exposures(ctx context.Context) ([]Exposure, error) {
	rows, err := s.pool.Query(ctx, exposureQuery, dashboardTables, apiRoles, readOwnPolicy)
	if err != nil {
		return nil, fmt.Errorf("inspect the dashboard's tables: %w", err)
	}
	type access struct {
		table, name, role string
		rls               bool
		held, publicHeld  []string
	}
	as, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (access, error) {
		var a access
		return a, r.Scan(&a.table, &a.name, &a.rls, &a.role, &a.held, &a.publicHeld)
	})
	if err != nil {
		return nil, fmt.Errorf("inspect the dashboard's tables: %w", err)
	}
	var out []Exposure
	for _, a := range as {
		if x, ok := exposure(a.table, a.name, a.role, a.rls, a.held, a.publicHeld); ok {
			out = append(out, x)
		}
	}
	rows, err = s.pool.Query(ctx, triggerQuery, append(slices.Clone(dashboardTables), workerTables...), apiRoles)
	if err != nil {
		return nil, fmt.Errorf("inspect the dashboard's triggers: %w", err)
	}
	ts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Exposure, error) {
		var x Exposure
		var name, fn string
		if err := r.Scan(&x.Table, &name, &fn, &x.Role); err != nil {
			return x, err
		}
		x.Privileges = []string{"TRIGGER " + name}
		x.Why = fmt.Sprintf("owns trigger %s's function %s, which runs inside the worker's writes", name, fn)
		x.Fix = fmt.Sprintf("drop trigger %s on %s;", name, x.Table)
		return x, nil
	})
	if err != nil {
		return nil, fmt.Errorf("inspect the dashboard's triggers: %w", err)
	}
	return append(out, ts...), nil
}

// exposure applies the contract to what one API role can do on one adopted table: writing it
// without row-level security, reading without it what the worker writes there, and TRUNCATE,
// TRIGGER or REFERENCES in any case (row-level security covers none of them).
func exposure(table, name, role string, rls bool, held, publicHeld []string) (Exposure, bool) {
	var bad []string
	var why []string
	var unguarded []string
	for _, p := range held {
		switch p {
		case "INSERT", "UPDATE", "DELETE":
			if !rls {
				unguarded = append(unguarded, p)
			}
		case "SELECT":
			if !rls && name != readsOnly {
				unguarded = append(unguarded, p)
			}
		case "TRUNCATE", "TRIGGER", "REFERENCES":
			bad = append(bad, p)
		}
	}
	if len(unguarded) > 0 {
		why = append(why, "can "+strings.Join(unguarded, ", ")+" without row-level security")
	}
	if len(bad) > 0 {
		why = append(why, "holds "+strings.Join(bad, ", ")+" (row-level security does not cover them)")
	}
	privs := append(unguarded, bad...)
	if len(privs) == 0 {
		return Exposure{}, false
	}
	from := role
	for _, p := range privs {
		if slices.Contains(publicHeld, p) {
			from += ", public"
			break
		}
	}
	return Exposure{
		Table:      table,
		Role:       role,
		Privileges: privs,
		Why:        strings.Join(why, " and "),
		Fix:        fmt.Sprintf("revoke %s on %s from %s;", strings.ToLower(strings.Join(privs, ", ")), table, from),
	}, true
}

// checkExposures runs before migrate changes anything: with exposures it stops, unless the
// operator allowed them, and then each is logged as a warning.
func (s *Store) checkExposures(ctx context.Context) error {
	xs, err := s.Exposures(ctx)
	if err != nil || len(xs) == 0 {
		return err
	}
	if !s.allowExposed {
		return &ExposedError{Exposures: xs}
	}
	for _, x := range xs {
		s.log.Warn("migrate.exposed", zap.String("table", x.Table), zap.String("role", x.Role),
			zap.Strings("privileges", x.Privileges), zap.String("fix", x.Fix),
			zap.String("why", "MIGRATE_ALLOW_EXPOSED=true: migrating anyway"))
	}
	return nil
}

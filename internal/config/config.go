// Package config decodes the worker's settings from the environment with envconfig, checks them, and maps them onto each component's options.
//
// envconfig.Process decodes every variable by its struct tag (names, required, descriptions);
// the same tags draw the --help table (Usage). The defaults are not
// tags: each is the …Default constant of the package that owns the setting, read once in
// Defaults, and Load decodes over them, so an absent variable keeps its default. An empty
// variable counts as absent (docs/engineering.md, "An empty variable is an unset one"). Load
// reports every value that does not decode and Validate every value that decodes but is wrong,
// each as one line naming the variable, what is wrong and the fix. The methods of
// components.go turn a Config into the store's, the upstream client's and the syncer's options:
// the one place where an environment variable meets the option it sets.
package config

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/usage-sync/usage-sync/internal/logging"
	"github.com/usage-sync/usage-sync/internal/safetext"
	"github.com/usage-sync/usage-sync/internal/schedule"
	"github.com/usage-sync/usage-sync/internal/store"
	"github.com/usage-sync/usage-sync/internal/syncer"
	"github.com/usage-sync/usage-sync/internal/upstream"
)

// Config is every setting of the worker. Fields tagged secret:"true" never appear in logs or
// errors: Redacted masks them.
type Config struct {
	DatabaseURL string `envconfig:"DATABASE_URL" required:"true" secret:"true" desc:"PostgreSQL to write to: a postgres:// URL or a key=value DSN"`
	DBMaxConns  int    `envconfig:"DB_MAX_CONNS" desc:"connection pool size; empty: 2 x SYNC_CONCURRENCY + 2, enough for SYNC_CONCURRENCY; when set, at least SYNC_CONCURRENCY + 1"`
	DBPoolMode  string `envconfig:"DB_POOL_MODE" desc:"auto, session or transaction; auto picks transaction on port 6543 (Supabase's transaction pooler)"`

	MigrateAllowExposed bool `envconfig:"MIGRATE_ALLOW_EXPOSED" desc:"migrate proceeds although the dashboard's tables are exposed to the API roles (anon, authenticated), logging a warning per exposure; false: it stops, changing nothing, and names each exposure with the SQL that closes it"`

	UpstreamBaseURL       string        `envconfig:"UPSTREAM_BASE_URL" desc:"Email Verification API base URL, usually ending in /api/v1 (required to sync)"`
	UpstreamAdminToken    string        `envconfig:"UPSTREAM_ADMIN_TOKEN" secret:"true" desc:"admin token: call the API for every user with user_id= (this or SUPABASE_JWT_SECRET is required to sync)"`
	SupabaseJWTSecret     string        `envconfig:"SUPABASE_JWT_SECRET" secret:"true" desc:"used when UPSTREAM_ADMIN_TOKEN is empty: mint a short-lived user JWT per user"`
	UpstreamJWTTTL        time.Duration `envconfig:"UPSTREAM_JWT_TTL" desc:"lifetime of a minted user JWT (at most 15m)"`
	UpstreamTimeout       time.Duration `envconfig:"UPSTREAM_TIMEOUT" desc:"timeout of one upstream request"`
	UpstreamRetryMax      time.Duration `envconfig:"UPSTREAM_RETRY_MAX_ELAPSED" desc:"retry budget of one upstream call, waits included"`
	UpstreamRetryAfter    time.Duration `envconfig:"UPSTREAM_RETRY_AFTER_MAX" desc:"longest Retry-After the worker waits within one call; a failed user's next attempt is never moved past FAILURE_BACKOFF_MAX"`
	UpstreamAllowInsecure bool          `envconfig:"UPSTREAM_ALLOW_INSECURE" desc:"accept an http:// UPSTREAM_BASE_URL to a host other than this machine (the tokens then cross the network in cleartext; logged as a warning)"`
	UpstreamMaxInFlight   int           `envconfig:"UPSTREAM_MAX_INFLIGHT" desc:"upstream requests in flight at once per process, retries included; empty: 4 x SYNC_CONCURRENCY (a cold user's widest round is about four requests)"`
	UpstreamRateLimit     float64       `envconfig:"UPSTREAM_RATE_LIMIT" desc:"upstream requests per second per process, retries included, spaced evenly; empty or 0: no limit. A vendor limit of R req/s shared by N replicas: set R/N on each"`

	SyncEnabled        bool          `envconfig:"SYNC_ENABLED" desc:"the daemon schedules cycles only when true; --once runs regardless"`
	SyncSchedule       string        `envconfig:"SYNC_SCHEDULE" desc:"5-field cron spec or descriptor such as @every 1m, in UTC"`
	SyncConcurrency    int           `envconfig:"SYNC_CONCURRENCY" desc:"users synced at once (1..64)"`
	SyncLeaseTTL       time.Duration `envconfig:"SYNC_LEASE_TTL" desc:"lease on a user being synced, renewed while it runs (at least 10s)"`
	SyncUserTimeout    time.Duration `envconfig:"SYNC_USER_TIMEOUT" desc:"longest sync of one user"`
	FailureBackoffBase time.Duration `envconfig:"FAILURE_BACKOFF_BASE" desc:"first wait before retrying a user whose sync failed; doubles per failure"`
	FailureBackoffMax  time.Duration `envconfig:"FAILURE_BACKOFF_MAX" desc:"longest wait before retrying a failed user"`

	SettleLag       time.Duration `envconfig:"SETTLE_LAG" desc:"a UTC day is final once read this long after its end"`
	MaxBackfillDays int           `envconfig:"MAX_BACKFILL_DAYS" desc:"unsettled days re-read per cycle, at most (1..90)"`
	TaskOverlap     time.Duration `envconfig:"TASK_OVERLAP" desc:"overlap of consecutive task listings"`
	RevisionWindow  time.Duration `envconfig:"REVISION_WINDOW" desc:"finished tasks are re-read this long for revised counts"`

	RevisionInterval time.Duration `envconfig:"REVISION_INTERVAL" desc:"finished tasks are re-read for revisions at most this often per user; 0: every cycle"`

	ChargeEnabled bool       `envconfig:"CHARGE_ENABLED" desc:"debit user_credits; false is shadow mode (ledger rows prefixed shadow:, balances untouched)"`
	ChargeFrom    *time.Time `envconfig:"CHARGE_FROM" desc:"RFC 3339 instant usage is charged from, fractional seconds kept; empty: each user's go-live (the later of its enrolment and its first take by a live worker)"`

	WebhookAddr   string `envconfig:"WEBHOOK_ADDR" desc:"host:port the daemon accepts task-completion webhooks on (POST /webhooks/tasks); empty: no webhook listener"`
	WebhookSecret string `envconfig:"WEBHOOK_SECRET" secret:"true" desc:"HMAC-SHA256 secret the upstream signs webhooks with (X-Webhook-Signature); required unless WEBHOOK_ADDR is loopback (127.0.0.1, ::1, localhost), where empty accepts unsigned deliveries"`

	TriggerMinInterval time.Duration `envconfig:"TRIGGER_MIN_INTERVAL" desc:"no webhook or request_sync() syncs one user more than once per this interval, across replicas (at least 1s)"`

	MetricsAddr     string        `envconfig:"METRICS_ADDR" desc:"host:port serving GET /livez, /readyz and /metrics; off: none; empty: :9464 for the daemon, none for --once"`
	SyncRequestPoll time.Duration `envconfig:"SYNC_REQUEST_POLL" desc:"how often the daemon looks for users whose sync the dashboard requested (public.request_sync())"`

	LogLevel string `envconfig:"LOG_LEVEL" desc:"debug, info, warn or error"`
	WorkerID string `envconfig:"WORKER_ID" desc:"names this worker in leases and logs; empty: hostname-pid"`
}

// Defaults is the configuration when no variable is set: each default is read, here and only
// here, from the …Default constant of the package that owns the setting.
func Defaults() Config {
	return Config{
		DBPoolMode:         store.PoolModeDefault,
		UpstreamJWTTTL:     upstream.JWTTTLDefault,
		UpstreamTimeout:    upstream.TimeoutDefault,
		UpstreamRetryMax:   upstream.MaxElapsedDefault,
		UpstreamRetryAfter: upstream.MaxRetryAfterDefault,
		SyncSchedule:       schedule.SpecDefault,
		SyncConcurrency:    syncer.ConcurrencyDefault,
		SyncLeaseTTL:       syncer.LeaseTTLDefault,
		SyncUserTimeout:    syncer.UserTimeoutDefault,
		FailureBackoffBase: syncer.FailureBackoffBaseDefault,
		FailureBackoffMax:  syncer.FailureBackoffMaxDefault,
		SettleLag:          syncer.SettleLagDefault,
		MaxBackfillDays:    syncer.MaxBackfillDaysDefault,
		TaskOverlap:        syncer.TaskOverlapDefault,
		RevisionWindow:     syncer.RevisionWindowDefault,
		RevisionInterval:   syncer.RevisionIntervalDefault,
		SyncRequestPoll:    syncer.RequestPollDefault,
		TriggerMinInterval: syncer.TriggerMinIntervalDefault,
		LogLevel:           logging.LevelDefault,
	}
}

// DBMaxConnsDefault is the pool size when DB_MAX_CONNS is empty: for each user in flight one
// connection for its write transaction and one for its lease renewal (which must never queue
// behind the worker's own transactions), one for claims, and one for the rest (webhooks,
// probes). A pool opens connections only as they are needed, so the bound costs nothing idle.
func DBMaxConnsDefault(concurrency int) int { return 2*concurrency + 2 }

// UpstreamMaxInFlightDefault is the bound on upstream requests in flight when
// UPSTREAM_MAX_INFLIGHT is empty: for each user in flight, room for the widest round of its reads
// (a cold user's windows, per-purpose totals and first task page, about four requests).
func UpstreamMaxInFlightDefault(concurrency int) int { return upstreamInFlightPerUser * concurrency }

// upstreamInFlightPerUser is the requests in flight one user's sync is given room for by default.
const upstreamInFlightPerUser = 4

// UpstreamInFlight is the bound on upstream requests in flight the worker keeps:
// UPSTREAM_MAX_INFLIGHT, or when it is empty UpstreamMaxInFlightDefault(SYNC_CONCURRENCY).
func (c Config) UpstreamInFlight() int {
	if c.UpstreamMaxInFlight > 0 {
		return c.UpstreamMaxInFlight
	}
	return UpstreamMaxInFlightDefault(c.SyncConcurrency)
}

// PoolSize is the connection pool the worker opens: DB_MAX_CONNS, or when it is empty enough
// for SYNC_CONCURRENCY.
func (c Config) PoolSize() int {
	if c.DBMaxConns > 0 {
		return c.DBMaxConns
	}
	return DBMaxConnsDefault(c.SyncConcurrency)
}

// Mode says what the configuration is for.
type Mode int

const (
	// ModeMigrate applies the schema: only the database settings (and MIGRATE_ALLOW_EXPOSED)
	// matter.
	ModeMigrate Mode = iota + 1
	// ModeDatabase reads or edits the worker's tables without syncing (report, pause, resume):
	// only the database settings matter.
	ModeDatabase
	// ModeSync runs the daemon or --once: everything matters.
	ModeSync
)

// field is one tagged field of Config.
type field struct {
	name   string
	secret bool
	value  reflect.Value
	sf     reflect.StructField
}

func fieldsOf(c *Config) []field {
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	out := make([]field, 0, t.NumField())
	for i := range t.NumField() {
		sf := t.Field(i)
		if name := sf.Tag.Get("envconfig"); name != "" {
			out = append(out, field{name: name, secret: sf.Tag.Get("secret") == "true", value: v.Field(i), sf: sf})
		}
	}
	return out
}

// Load decodes the process environment with envconfig.Process over the defaults: an absent or
// empty variable keeps its default. A value that does not decode keeps the default too, and its
// problem is returned together with the others, one per line, so Validate can still be run on
// the result and the operator sees every problem at once.
func Load() (Config, error) {
	c := Defaults()
	var problems []error
	for _, f := range fieldsOf(&c) {
		raw, _ := os.LookupEnv(f.name)
		if raw == "" {
			// envconfig would decode "" as a value (an empty string, or an error for numbers,
			// durations and booleans); here empty is unset (docs/engineering.md).
			continue
		}
		// One variable per Process, so that one bad value does not hide the next: Process
		// stops at the first. The one-field struct carries the field's own tags.
		one := reflect.New(reflect.StructOf([]reflect.StructField{{Name: f.sf.Name, Type: f.sf.Type, Tag: f.sf.Tag}}))
		if err := envconfig.Process("", one.Interface()); err != nil || !finite(one.Elem().Field(0)) {
			problems = append(problems, decodeProblem(f, raw))
			continue
		}
		f.value.Set(one.Elem().Field(0))
	}
	return c, errors.Join(problems...)
}

// decodeProblem is the line for a value of f that envconfig could not decode. envconfig's own
// error ("envconfig.Process: assigning X to Y: converting 'v' to type int. details: ...") names
// the Go field and type and echoes secrets; this names the variable, shows the value only when
// it is not secret (quoted and cut, so it cannot break the terminal), and says how to write it.
func decodeProblem(f field, raw string) error {
	shown := "(value hidden)"
	if !f.secret {
		shown = strconv.Quote(safetext.Clean(raw, 64))
	}
	return fmt.Errorf("%s %s: %s", f.name, shown, decodeHint(f.sf.Type, text(f.value)))
}

// finite is false for a float that strconv reads but no setting can mean: NaN and ±Inf.
func finite(v reflect.Value) bool {
	return v.Kind() != reflect.Float64 || !(math.IsNaN(v.Float()) || math.IsInf(v.Float(), 0))
}

func isDuration(t reflect.Type) bool { return t == reflect.TypeFor[time.Duration]() }
func isTimePtr(t reflect.Type) bool  { return t == reflect.TypeFor[*time.Time]() }

// decodeHint says how to write a value of typ; def is the variable's default, as text.
func decodeHint(typ reflect.Type, def string) string {
	switch {
	case isDuration(typ):
		return fmt.Sprintf("is not a duration: use a number with a unit (ns, us, ms, s, m, h), such as %q", def)
	case isTimePtr(typ):
		return `is not an RFC 3339 timestamp: use a UTC instant such as "2026-01-01T00:00:00Z" (fractional seconds are kept), or leave it empty`
	case typ.Kind() == reflect.Bool:
		return "is not a boolean: set it to true or false"
	case typ.Kind() >= reflect.Int && typ.Kind() <= reflect.Int64:
		return fmt.Sprintf("is not a whole number: set a number such as %s", orText(def, "8"))
	case typ.Kind() == reflect.Float64:
		return "is not a number: set a number such as 100 or 2.5, or leave it empty"
	default:
		return "cannot be read"
	}
}

func orText(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}

// Validate reports every problem of c for mode, one per line, each naming the variable, what is
// wrong and how to fix it. Secret values are never quoted.
func (c Config) Validate(mode Mode) error {
	var p problems
	c.validateDatabase(&p)
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		p.addf("LOG_LEVEL %q is not a level: set it to debug, info, warn or error", c.LogLevel)
	}
	if mode == ModeSync {
		c.validateUpstream(&p)
		c.validateSync(&p)
		c.validateWebhook(&p)
		c.validateOps(&p)
	}
	return p.err()
}

func (c Config) validateWebhook(p *problems) {
	if c.WebhookAddr == "" {
		return
	}
	host, port, err := net.SplitHostPort(c.WebhookAddr)
	if err != nil || port == "" {
		p.addf("WEBHOOK_ADDR %q is not host:port: set it to an address to listen on, such as :8080 or 0.0.0.0:8080, or leave it empty for no webhooks", c.WebhookAddr)
	} else if c.WebhookSecret == "" && !upstream.LoopbackHost(host) {
		// Anyone who reaches the port could otherwise make the worker sync whom they like.
		p.addf("WEBHOOK_ADDR %q accepts deliveries from the network but WEBHOOK_SECRET is empty: set WEBHOOK_SECRET to the secret the upstream signs webhooks with, or listen on loopback only (e.g. WEBHOOK_ADDR=127.0.0.1:%s)", c.WebhookAddr, port)
	}
}

// InsecureUpstream is the warning an accepted cleartext UPSTREAM_BASE_URL deserves
// (UPSTREAM_ALLOW_INSECURE=true and a non-loopback http:// host), or "" when there is none.
func (c Config) InsecureUpstream() string {
	u, err := upstream.ParseBaseURL(c.UpstreamBaseURL)
	if err != nil || upstream.CheckTransport(u, false) == nil {
		return ""
	}
	return fmt.Sprintf("UPSTREAM_BASE_URL is %s://%s and UPSTREAM_ALLOW_INSECURE=true: the admin token and user tokens cross the network in cleartext; use https:// unless that network is trusted", u.Scheme, u.Host)
}

// MetricsOff is the METRICS_ADDR value that turns the probe and metrics listener off.
const MetricsOff = "off"

func (c Config) validateOps(p *problems) {
	if c.MetricsAddr != MetricsOff && c.MetricsAddr != "" {
		if _, port, err := net.SplitHostPort(c.MetricsAddr); err != nil || port == "" {
			p.addf("METRICS_ADDR %q is not host:port: set it to an address to listen on, such as :9464, or off for no probes and metrics", c.MetricsAddr)
		}
	}
	c.positive(p, "TRIGGER_MIN_INTERVAL", c.TriggerMinInterval, time.Second)
	if c.SyncRequestPoll < 100*time.Millisecond {
		p.addf("SYNC_REQUEST_POLL %s is too short: set at least 100ms (default %s)", c.SyncRequestPoll, syncer.RequestPollDefault)
	}
}

type problems []error

func (p *problems) addf(format string, args ...any) { *p = append(*p, fmt.Errorf(format, args...)) }
func (p problems) err() error                       { return errors.Join(p...) }

func (c Config) validateDatabase(p *problems) {
	switch dsn := strings.TrimSpace(c.DatabaseURL); {
	case dsn == "":
		p.addf("DATABASE_URL is empty: set it to the database to sync into, e.g. postgres://user:password@host:5432/postgres")
	case strings.Contains(dsn, "://"):
		u, err := url.Parse(dsn)
		// url.Parse errors quote the whole URL, password included: never pass them on.
		if err != nil {
			p.addf("DATABASE_URL is not a valid URL: check its escaping (a password with @, : or / must be percent-encoded)")
		} else if u.Scheme != "postgres" && u.Scheme != "postgresql" {
			p.addf("DATABASE_URL %s has scheme %q: use postgres:// (or a key=value DSN)", store.RedactDSN(dsn), u.Scheme)
		}
	case !strings.Contains(dsn, "="):
		p.addf("DATABASE_URL is neither a postgres:// URL nor a key=value DSN: use e.g. postgres://user:password@host:5432/postgres")
	}
	if c.DBMaxConns < 0 || c.DBMaxConns > 1000 {
		p.addf("DB_MAX_CONNS %d is out of range: set 1 to 1000, or leave it empty to size the pool from SYNC_CONCURRENCY", c.DBMaxConns)
	}
	switch c.DBPoolMode {
	case "auto", "session", "transaction":
	default:
		p.addf("DB_POOL_MODE %q is not a pool mode: set auto, session or transaction", c.DBPoolMode)
	}
}

func (c Config) validateUpstream(p *problems) {
	if u, err := upstream.ParseBaseURL(c.UpstreamBaseURL); err != nil {
		*p = append(*p, err)
	} else if err := upstream.CheckTransport(u, c.UpstreamAllowInsecure); err != nil {
		*p = append(*p, err)
	}
	if c.UpstreamAdminToken == "" && c.SupabaseJWTSecret == "" {
		p.addf("UPSTREAM_ADMIN_TOKEN and SUPABASE_JWT_SECRET are both empty: set UPSTREAM_ADMIN_TOKEN to call the API as admin, or SUPABASE_JWT_SECRET to mint per-user tokens")
	}
	c.positive(p, "UPSTREAM_JWT_TTL", c.UpstreamJWTTTL, 0)
	if c.UpstreamJWTTTL > upstream.JWTTTLMax {
		p.addf("UPSTREAM_JWT_TTL %s is above %s: a minted token that leaks would stay good that long; set at most %s (default %s)",
			c.UpstreamJWTTTL, upstream.JWTTTLMax, upstream.JWTTTLMax, upstream.JWTTTLDefault)
	}
	c.positive(p, "UPSTREAM_TIMEOUT", c.UpstreamTimeout, 0)
	c.positive(p, "UPSTREAM_RETRY_MAX_ELAPSED", c.UpstreamRetryMax, 0)
	c.positive(p, "UPSTREAM_RETRY_AFTER_MAX", c.UpstreamRetryAfter, 0)
	if c.UpstreamMaxInFlight < 0 {
		p.addf("UPSTREAM_MAX_INFLIGHT %d is negative: set the most upstream requests in flight at once (at least 1), or leave it empty for 4 x SYNC_CONCURRENCY (%d)",
			c.UpstreamMaxInFlight, UpstreamMaxInFlightDefault(c.SyncConcurrency))
	}
	if c.UpstreamRateLimit < 0 {
		p.addf("UPSTREAM_RATE_LIMIT %v is not a rate: set the upstream requests per second this process may make (e.g. 100; the vendor's limit divided by the replicas), or 0 or empty for no limit", c.UpstreamRateLimit)
	}
}

func (c Config) validateSync(p *problems) {
	if _, err := schedule.Parse(c.SyncSchedule); err != nil {
		p.addf(`SYNC_SCHEDULE %q: %v: use a 5-field cron spec such as "*/5 * * * *" (UTC)`, c.SyncSchedule, err)
	}
	if c.SyncConcurrency < 1 || c.SyncConcurrency > 64 {
		p.addf("SYNC_CONCURRENCY %d is out of range: set 1 to 64 (default %d)", c.SyncConcurrency, syncer.ConcurrencyDefault)
	} else if c.DBMaxConns >= 1 && c.DBMaxConns < c.SyncConcurrency+1 {
		p.addf("DB_MAX_CONNS %d is below SYNC_CONCURRENCY + 1 (%d): each user in flight holds a connection and claiming needs one more; raise DB_MAX_CONNS to at least %d, or leave it empty to size the pool from SYNC_CONCURRENCY (%d)",
			c.DBMaxConns, c.SyncConcurrency+1, c.SyncConcurrency+1, DBMaxConnsDefault(c.SyncConcurrency))
	}
	c.positive(p, "SYNC_LEASE_TTL", c.SyncLeaseTTL, 10*time.Second)
	c.positive(p, "SYNC_USER_TIMEOUT", c.SyncUserTimeout, 0)
	c.positive(p, "FAILURE_BACKOFF_BASE", c.FailureBackoffBase, 0)
	c.positive(p, "FAILURE_BACKOFF_MAX", c.FailureBackoffMax, 0)
	if c.FailureBackoffBase > 0 && c.FailureBackoffMax < c.FailureBackoffBase {
		p.addf("FAILURE_BACKOFF_MAX %s is below FAILURE_BACKOFF_BASE %s: raise the maximum or lower the base", c.FailureBackoffMax, c.FailureBackoffBase)
	}
	// Zero is not "immediately" for these: the syncer would read it as "use the default".
	c.positive(p, "SETTLE_LAG", c.SettleLag, 0)
	c.positive(p, "TASK_OVERLAP", c.TaskOverlap, 0)
	c.positive(p, "REVISION_WINDOW", c.RevisionWindow, 0)
	if c.RevisionInterval < 0 {
		p.addf("REVISION_INTERVAL %s is negative: set 0 (every cycle) or a positive duration (default %s)", c.RevisionInterval, syncer.RevisionIntervalDefault)
	}
	if c.MaxBackfillDays < 1 || c.MaxBackfillDays > 90 {
		p.addf("MAX_BACKFILL_DAYS %d is out of range: set 1 to 90 (default %d)", c.MaxBackfillDays, syncer.MaxBackfillDaysDefault)
	}
}

// positive reports d unless it is above zero and at least min.
func (Config) positive(p *problems, name string, d, min time.Duration) {
	switch {
	case d <= 0:
		p.addf("%s %s is not positive: set a duration above zero, or leave it empty for the default", name, d)
	case d < min:
		p.addf("%s %s is too short: set at least %s", name, d, min)
	}
}

// Redacted is every variable's effective value for the start-up log: the database password is
// masked, and tokens and the JWT secret show only whether they are set.
func (c Config) Redacted() map[string]string {
	out := make(map[string]string)
	for _, f := range fieldsOf(&c) {
		var s string
		switch v := f.value.Interface().(type) {
		case *time.Time:
			if v != nil {
				s = v.Format(time.RFC3339Nano)
			}
		default:
			s = fmt.Sprint(v)
		}
		switch {
		case f.name == "DATABASE_URL":
			s = store.RedactDSN(s)
		case f.name == "DB_MAX_CONNS":
			s = strconv.Itoa(c.PoolSize()) // the effective size, also when derived
		case f.name == "UPSTREAM_MAX_INFLIGHT":
			s = strconv.Itoa(c.UpstreamInFlight())
		case f.secret && s != "":
			s = "(set)"
		}
		out[f.name] = s
	}
	return out
}

// Usage writes the table of variables for --help, one row per field of Config, from the same
// tags Process decodes: the envconfig name, the field's type as envconfig's own table names it,
// the default from Defaults (not a tag: see the package comment), and the desc tag.
func Usage(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 1, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  VARIABLE\tTYPE\tDEFAULT\tMEANING")
	d := Defaults()
	for _, f := range fieldsOf(&d) {
		required := ""
		if f.sf.Tag.Get("required") == "true" {
			required = "required: "
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s%s\n", f.name, typeName(f.value), text(f.value), required, f.sf.Tag.Get("desc"))
	}
	return tw.Flush()
}

// typeName names a variable's type as envconfig's own usage table does.
func typeName(v reflect.Value) string {
	t := v.Type()
	switch {
	case isDuration(t):
		return "Duration"
	case isTimePtr(t):
		return "Time"
	case t.Kind() == reflect.Bool:
		return "True or False"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		return "Integer"
	case t.Kind() == reflect.Float64:
		return "Float"
	default:
		return "String"
	}
}

// text is a value as a person writes it: durations without zero units ("5m", not "5m0s"),
// instants in RFC 3339, and nothing for a zero number or time, which means "no default".
func text(v reflect.Value) string {
	switch {
	case isDuration(v.Type()):
		s := time.Duration(v.Int()).String()
		if strings.HasSuffix(s, "m0s") {
			s = strings.TrimSuffix(s, "0s")
		}
		if strings.HasSuffix(s, "h0m") {
			s = strings.TrimSuffix(s, "0m")
		}
		return s
	case isTimePtr(v.Type()):
		if v.IsNil() {
			return ""
		}
		return text(v.Elem())
	case v.Type() == reflect.TypeFor[time.Time]():
		if t := v.Interface().(time.Time); !t.IsZero() {
			return t.Format(time.RFC3339Nano)
		}
		return ""
	case v.Kind() >= reflect.Int && v.Kind() <= reflect.Int64 && v.Int() == 0:
		return ""
	case v.Kind() == reflect.Float64 && v.Float() == 0:
		return ""
	default:
		return fmt.Sprint(v.Interface())
	}
}

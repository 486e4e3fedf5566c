package cli

import (
	"fmt"
	"io"

	"github.com/usage-sync/usage-sync/internal/config"
)

const shortUsage = `Usage:
  usage-sync                               run the daemon (syncs on SYNC_SCHEDULE when SYNC_ENABLED=true)
  usage-sync --once [--all | --user UUID]  run one sync cycle and exit
  usage-sync migrate                       apply the database schema and exit
  usage-sync report --user UUID [--days N] usage, charges and shortfall per UTC day
  usage-sync resync --user UUID [--from D] [--to D]  re-read settled days (vendor corrections)
  usage-sync verify [--user UUID] [--json]  compare the upstream with the record, mirror and ledger
  usage-sync pause --user UUID --reason TEXT [--by NAME]  stop syncing and charging a user
  usage-sync resume --user UUID            end a pause; the next sync catches up
  usage-sync help | --help | --version
Run "usage-sync --help" for details and the environment variables.
`

const helpText = `usage-sync keeps the dashboard's database in step with the Email Verification API.

For every user in profiles it reads per-API-key request totals and tasks from the API, upserts
them into api_keys, api_usage and tasks, charges the usage against user_credits through the
append-only credit_ledger (exactly once, never below zero; shadow mode unless CHARGE_ENABLED=true),
and records how each user's sync went in sync_state. Several workers may run at once: users are
leased through the database.

Usage:
  usage-sync
      Run the daemon. With SYNC_ENABLED=true it runs a sync cycle on SYNC_SCHEDULE (UTC), never
      two at once; otherwise it only says so in its log and waits for a signal. With
      WEBHOOK_ADDR set it also accepts task-completion webhooks (signed with WEBHOOK_SECRET,
      required unless the address is loopback) and syncs their users at once. It serves GET
      /livez, /readyz and /metrics on METRICS_ADDR (default :9464), and every SYNC_REQUEST_POLL
      syncs the users who asked for it through public.request_sync(). No webhook or request
      syncs one user more than once per TRIGGER_MIN_INTERVAL; a webhook waits out the user's
      failure backoff, a request may skip it.
      Started while the database is unreachable or its schema is behind, it waits for it
      (retrying with backoff, unready meanwhile) instead of exiting.
  usage-sync --once [--all | --user UUID]
      Run one cycle for every due user whatever SYNC_ENABLED says, print a one-line summary on
      stderr and exit.
  usage-sync migrate
      Apply the database schema (needs only DATABASE_URL), print what was applied and exit.
      It first checks the dashboard's tables for access the API roles (anon, authenticated)
      have around row-level security, and stops, changing nothing, naming each exposure and
      the SQL that closes it (exit 3; MIGRATE_ALLOW_EXPOSED=true proceeds with a warning
      each). It ends by taking back from the API roles every right on the worker's tables,
      sequences and functions but select of their own rows and request_sync().
  usage-sync report --user UUID [--days 14]
      Print, per UTC day, the user's requests by key and by the per-purpose totals, the
      requests no listed key accounts for (keys revoked before a listing showed them), the
      billable emails of finished tasks, and what was charged, debited, short and shadow-charged.
      Read-only; needs only DATABASE_URL.
  usage-sync resync --user UUID [--from YYYY-MM-DD] [--to YYYY-MM-DD]
      Re-read the user's settled days (at most 90 a run; default from the charge start through
      the last settled day) and the tasks created in them, as if unsettled: vendor corrections
      are mirrored, increases charged once, decreases logged and never refunded. Takes the
      user's lease; prints a table per day. "usage-sync resync --help" for more.
  usage-sync verify [--user UUID] [--json]
      Compare, per user, the upstream's lifetime key listing and per-purpose totals of the
      settled days with the worker's record, the mirror and the ledger; print each difference
      and what fixes it. Writes nothing; exit 1 when it finds any. "usage-sync verify --help".
  usage-sync pause --user UUID --reason TEXT [--by NAME]
      Stop syncing and charging the user (a billing dispute, a support hold) until resume:
      sync_state.status 'paused' with the reason, who and when. Safe beside the daemon.
      "usage-sync pause --help" has the details and its exit codes.
  usage-sync resume --user UUID
      End the pause; the next sync catches up everything since. Exit 1 when the user is not
      paused. "usage-sync resume --help" has the details.
  usage-sync help | --help | -h
      Show this help.
  usage-sync --version
      Print the version.

Flags:
  --once        run one cycle and exit
  --all         with --once: also sync users that are backing off after failures
  --user UUID   with --once: sync only this user, ignoring its backoff

Exit codes:
  0  done (--once: every user the run was responsible for synced; users a live worker held
     or an operator paused are named in the summary as skipped or paused; daemon: stopped by
     a signal)
  1  --once: some user failed, or was abandoned at shutdown (see the summary line); a run
     after an interrupted one attempts every user again, so a failure is never hidden
     (resume: the user is not paused; resync: it failed or another worker held the user;
     verify: a difference was found, or a user could not be read)
  2  usage or configuration error
  3  runtime error: --once, migrate, report: database unreachable, schema outdated (run
     usage-sync migrate); any command: upstream client misconfigured; migrate stopped on
     exposed dashboard tables; daemon: a part could not start or died (e.g. WEBHOOK_ADDR or
     METRICS_ADDR already taken), after stopping the others

Signals: SIGINT or SIGTERM stops gracefully (users in flight finish or are abandoned and
retried later): the daemon stops its webhooks first, then the schedule and the request poll,
and its probes last; a second signal exits at once with code 130.

Logs are JSON lines on stderr, one event per line ("event": "sync.user.done"); secrets never
appear in them. docs/operations.md ("Logs") lists every event, its level and what to do about it.

Environment (an empty variable takes the default; config.example.env lists them all):
`

func writeHelp(w io.Writer) error {
	if _, err := fmt.Fprint(w, helpText); err != nil {
		return err
	}
	return config.Usage(w)
}

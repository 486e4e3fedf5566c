#!/usr/bin/env bash
# make demo: one --once cycle against the upstream simulator, into a fresh database
# (usage_sync_demo), then what landed in each table.
#
# Needs: Go, psql, and a PostgreSQL (scripts/pg.sh finds or starts one). DEMO_PORT picks the
# simulator's port (default 18089, or the next free one).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .tmp

die() { printf 'demo: %s\n' "$*" >&2; exit 1; }
step() { printf '\n== %s\n' "$*"; }

now_ms() {
  local ns
  ns=$(date +%s%N)
  case "$ns" in
    *N) echo $(($(date +%s) * 1000)) ;; # BSD date has no %N
    *) echo $((ns / 1000000)) ;;
  esac
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

command -v psql >/dev/null 2>&1 ||
  die "psql not found: install the PostgreSQL client (apt-get install postgresql-client, or brew install libpq)"

step "PostgreSQL"
pg=$(scripts/pg.sh) || die "no PostgreSQL available (see above)"
eval "$pg"
server=$TEST_DATABASE_URL
case "$server" in
  postgres://* | postgresql://*) ;;
  *) die "the demo needs TEST_DATABASE_URL as a postgres:// URL, not a key=value DSN" ;;
esac
# The same server, database usage_sync_demo (the URL's path replaced, its query kept).
demo_url=$(printf '%s' "$server" | sed -E 's#^(postgres(ql)?://[^/?]*)(/[^?]*)?#\1/usage_sync_demo#')
psql "$server" -X -q -v ON_ERROR_STOP=1 \
  -c 'drop database if exists usage_sync_demo with (force)' \
  -c 'create database usage_sync_demo' >/dev/null ||
  die "could not recreate database usage_sync_demo on that server"
echo "database usage_sync_demo recreated"

step "build"
make --no-print-directory build

step "upstream simulator"
port=${DEMO_PORT:-18089}
for _ in $(seq 1 20); do
  port_open "$port" || break
  port=$((port + 1))
done
port_open "$port" && die "no free port from ${DEMO_PORT:-18089} on"
bin/upstream-sim -addr "127.0.0.1:$port" -seed 42 -users 4 >.tmp/sim.log 2>&1 &
sim_pid=$!
trap 'kill "$sim_pid" 2>/dev/null || true; wait "$sim_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  port_open "$port" && break
  kill -0 "$sim_pid" 2>/dev/null || die "the simulator exited: $(tail -n 5 .tmp/sim.log)"
  sleep 0.1
done
port_open "$port" || die "the simulator is not listening on 127.0.0.1:$port; see .tmp/sim.log"
echo "simulator on http://127.0.0.1:$port/api/v1 (log: .tmp/sim.log)"

users=()
while IFS= read -r id; do users+=("$id"); done < <(
  bin/upstream-sim -print-users -seed 42 -users 4 |
    grep -oE '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'
)
[ "${#users[@]}" -gt 0 ] || die "bin/upstream-sim -print-users printed no user ids"

step "migrate and seed ${#users[@]} users"
DATABASE_URL="$demo_url" bin/usage-sync migrate
seed=""
for i in "${!users[@]}"; do
  credits=20000
  # The last user is nearly out of credits: its charges are capped at the balance.
  [ "$i" -eq $((${#users[@]} - 1)) ] && credits=50
  seed+="insert into profiles (user_id, email, display_name) values ('${users[$i]}', 'user$((i + 1))@demo.test', 'Demo user $((i + 1))');"
  seed+="insert into user_credits (user_id, credits_remaining) values ('${users[$i]}', $credits);"
done
psql "$demo_url" -X -q -v ON_ERROR_STOP=1 -c "$seed"
printf '%s\n' "${users[@]}" | sed 's/^/  user /'
echo "  20000 credits each, 50 for the last"

# Charge from midnight UTC three days ago (GNU date, else BSD date).
charge_from=$(date -u -d "$(date -u +%F) -3 days" +%Y-%m-%dT00:00:00Z 2>/dev/null ||
  date -u -v-3d +%Y-%m-%dT00:00:00Z)

step "usage-sync --once (CHARGE_FROM=$charge_from; logs in .tmp/demo.log)"
started=$(now_ms)
set +e
DATABASE_URL="$demo_url" \
  UPSTREAM_BASE_URL="http://127.0.0.1:$port/api/v1" \
  UPSTREAM_ADMIN_TOKEN=sim-admin-token \
  CHARGE_ENABLED=true \
  CHARGE_FROM="$charge_from" \
  LOG_LEVEL=info \
  bin/usage-sync --once 2>.tmp/demo.log
rc=$?
set -e
took=$(($(now_ms) - started))
echo "last log lines:"
grep '^{' .tmp/demo.log | tail -n 4 | cut -c1-220 | sed 's/^/  /'
echo "summary: $(grep -v '^{' .tmp/demo.log | tail -n 1)"
echo "exit code $rc, ${took} ms"

step "what landed"
q() { psql "$demo_url" -X -P pager=off -P footer=off -v ON_ERROR_STOP=1 -c "$1"; }
q "select t as table, n as rows from (
     select 'profiles' t, count(*) n, 1 o from profiles
     union all select 'user_credits', count(*), 2 from user_credits
     union all select 'sync_state', count(*), 3 from sync_state
     union all select 'api_keys', count(*), 4 from api_keys
     union all select 'api_usage', count(*), 5 from api_usage
     union all select 'tasks', count(*), 6 from tasks
     union all select 'credit_ledger', count(*), 7 from credit_ledger) c order by o"
echo "sync_state"
q "select user_id, status, consecutive_failures as failures, last_success_at, settled_through, left(coalesce(last_error, ''), 60) as last_error
   from sync_state order by user_id"
echo "api_keys"
q "select user_id, id, name, purpose, integration, is_active, total_requests, last_used_at, revoked_at
   from api_keys order by user_id, id"
echo "api_usage per UTC day (the worker's rows)"
q "select period_start::date as day,
          count(*) filter (where api_key_id is not null) as key_rows,
          coalesce(sum(count) filter (where api_key_id is not null), 0) as key_requests,
          coalesce(sum(count) filter (where api_key_id is null), 0) as purpose_totals
   from api_usage where origin = 'usage-sync' group by 1 order by 1"
echo "tasks"
q "select status, count(*) as tasks, sum(email_count) as emails, sum(valid_count) as valid, sum(invalid_count) as invalid,
          sum(catchall_count) as catchall, sum(unknown_count) as unknown
   from tasks group by status order by status"
echo "credit_ledger"
q "select user_id, source, count(*) as rows, sum(amount) as amount, sum(debited) as debited
   from credit_ledger group by user_id, source order by user_id, source"
echo "user_credits (start = remaining + debited)"
q "select c.user_id, c.credits_remaining as remaining, coalesce(sum(l.debited), 0) as debited,
          c.credits_remaining + coalesce(sum(l.debited), 0) as start
   from user_credits c left join credit_ledger l using (user_id)
   group by c.user_id, c.credits_remaining order by c.user_id"

echo
echo "The demo database stays: psql '$demo_url'"
exit "$rc"

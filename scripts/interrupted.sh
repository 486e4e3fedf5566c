#!/usr/bin/env bash
# The exit code after interrupted runs (docs/scale.md, "Interrupted runs"; docs/design.md, "A
# cycle lives while a worker in it does"): a dozen simulated users, the one claimed first always
# refused (401), SYNC_CONCURRENCY=1 and 150 ms per request, into a fresh database
# (usage_sync_interrupted) for each case:
#   1. --once --all SIGTERMed 0.7 s in, then --once --all
#   2. two --once --all SIGKILLed 0.7 s in, SYNC_LEASE_TTL (10 s) waited, then --once --all
#   3. case 2's kills and wait, then three sequential --once --all
# Prints each case's exit codes and the refused user's last_attempt_at before and after.
#   scripts/interrupted.sh                  # bin/usage-sync
#   BIN=/tmp/old-usage-sync scripts/interrupted.sh
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p .tmp
BIN=${BIN:-bin/usage-sync}
die() { printf 'interrupted: %s\n' "$*" >&2; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pg=$(scripts/pg.sh) || die "no PostgreSQL available (see above)"
eval "$pg"
server=$TEST_DATABASE_URL
url=$(printf '%s' "$server" | sed -E 's#^(postgres(ql)?://[^/?]*)(/[^?]*)?#\1/usage_sync_interrupted#')
make --no-print-directory build >/dev/null || die "make build failed"

port=${INTERRUPTED_PORT:-18291}
while port_open "$port"; do port=$((port + 1)); done
sim=(-seed 12 -users 12 -keys 2 -tasks 3 -days 2)
users=($(bin/upstream-sim -print-users "${sim[@]}" | grep -oE '[0-9a-f]{8}-[0-9a-f-]{27}'))
refused=$(printf '%s\n' "${users[@]}" | sort | head -n 1) # claims go in user_id order
bin/upstream-sim -addr "127.0.0.1:$port" "${sim[@]}" -latency 150ms -refuse "$refused" >.tmp/interrupted-sim.log 2>&1 &
sim_pid=$!
trap 'kill "$sim_pid" 2>/dev/null; wait "$sim_pid" 2>/dev/null' EXIT
for _ in $(seq 1 100); do port_open "$port" && break; sleep 0.1; done
port_open "$port" || die "the simulator did not start; see .tmp/interrupted-sim.log"

export DATABASE_URL=$url UPSTREAM_BASE_URL=http://127.0.0.1:$port/api/v1 UPSTREAM_ADMIN_TOKEN=sim-admin-token \
  SYNC_CONCURRENCY=1 LOG_LEVEL=warn UPSTREAM_RETRY_MAX_ELAPSED=1s SYNC_LEASE_TTL=10s CHARGE_ENABLED=true
log=.tmp/interrupted-runs.log
: >"$log"
fresh() {
  psql "$server" -qX -c 'drop database if exists usage_sync_interrupted with (force)' -c 'create database usage_sync_interrupted' >/dev/null 2>&1
  "$BIN" migrate >/dev/null 2>&1 || die "migrate failed"
  for u in "${users[@]}"; do
    psql "$url" -qXc "insert into profiles (user_id) values ('$u'); insert into user_credits (user_id, credits_remaining) values ('$u', 100000)" >/dev/null
  done
}
once() { "$BIN" --once --all 2>>"$log"; echo $?; }
interrupt() { # interrupt SIGNAL: a --once --all stopped 0.7 s in; prints its exit code
  "$BIN" --once --all 2>>"$log" & local p=$!
  sleep 0.7
  kill "-$1" "$p"
  wait "$p" 2>/dev/null
  echo $?
}
attempt() { psql "$url" -AtXc "select coalesce(last_attempt_at::text, 'never') from sync_state where user_id = '$refused'"; }
synced() { psql "$url" -AtXc "select count(*) from sync_state where status = 'ok'"; }

echo "BIN=$BIN; refused user $refused"
echo "== 1. SIGTERM 0.7 s in, then --once --all"
fresh
rc1=$(interrupt TERM); before=$(attempt); rc2=$(once)
echo "   interrupted run exit $rc1; next --once --all exit $rc2; refused user's last_attempt_at $before -> $(attempt); $(synced) of 11 others synced"

echo "== 2. two SIGKILLs, SYNC_LEASE_TTL waited, then --once --all"
fresh
interrupt KILL >/dev/null; interrupt KILL >/dev/null; before=$(attempt)
sleep 11
rc=$(once)
echo "   --once --all exit $rc; refused user's last_attempt_at $before -> $(attempt); $(synced) of 11 others synced"

echo "== 3. case 2's kills and wait, then three sequential --once --all"
fresh
interrupt KILL >/dev/null; interrupt KILL >/dev/null
sleep 11
codes=()
for _ in 1 2 3; do codes+=("$(once)"); done
echo "   exit ${codes[*]}"
echo "(summaries of every run: $log)"

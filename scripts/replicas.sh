#!/usr/bin/env bash
# Replicas add up: one `usage-sync --once`, then N side by side, over the same simulated upstream
# (USERS users, LATENCY per request) into a fresh database each time. Prints wall times, the
# ratio, the exit codes and how often each user was claimed (lease_token: 1 = exactly once).
#   scripts/replicas.sh            # 1,500 users, 20ms, 3 replicas, SYNC_CONCURRENCY=4
#   USERS=300 REPLICAS=2 scripts/replicas.sh
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .tmp
USERS=${USERS:-1500} LATENCY=${LATENCY:-20ms} REPLICAS=${REPLICAS:-3} CONCURRENCY=${CONCURRENCY:-4}
BIN=${BIN:-bin/usage-sync} # another build of the worker to compare with
die() { printf 'replicas: %s\n' "$*" >&2; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

pg=$(scripts/pg.sh) || die "no PostgreSQL available (see above)"
eval "$pg"
server=$TEST_DATABASE_URL
db_url=$(printf '%s' "$server" | sed -E 's#^(postgres(ql)?://[^/?]*)(/[^?]*)?#\1/usage_sync_replicas#')
make --no-print-directory build >/dev/null

port=${REPLICAS_PORT:-18189}
while port_open "$port"; do port=$((port + 1)); done
sim=(-seed 7 -users "$USERS" -keys 3 -tasks 5 -days 3)
bin/upstream-sim -addr "127.0.0.1:$port" "${sim[@]}" -latency "$LATENCY" >.tmp/replicas-sim.log 2>&1 &
sim_pid=$!
trap 'kill "$sim_pid" 2>/dev/null || true; wait "$sim_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do port_open "$port" && break; sleep 0.1; done
port_open "$port" || die "the simulator did not start; see .tmp/replicas-sim.log"
seed=$(bin/upstream-sim -print-users "${sim[@]}" |
  grep -oE '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}' |
  awk '{printf "insert into profiles (user_id) values (%c%s%c); insert into user_credits (user_id, credits_remaining) values (%c%s%c, 1000000);\n", 39, $1, 39, 39, $1, 39}')

# run N: fresh database, N --once runs at once; prints "N ms rc... claims"
run() {
  local n=$1 pids=() rcs=() started took
  psql "$server" -X -q -v ON_ERROR_STOP=1 -c 'drop database if exists usage_sync_replicas with (force)' 2>/dev/null \
    -c 'create database usage_sync_replicas' >/dev/null
  DATABASE_URL="$db_url" "$BIN" migrate >/dev/null 2>&1
  psql "$db_url" -X -q -v ON_ERROR_STOP=1 <<<"$seed"
  # Enrol everyone first so that all runs start from the same state.
  psql "$db_url" -X -q -c "insert into sync_state (user_id) select user_id from profiles" >/dev/null
  started=$(now_ms)
  for i in $(seq 1 "$n"); do
    DATABASE_URL="$db_url" UPSTREAM_BASE_URL="http://127.0.0.1:$port/api/v1" UPSTREAM_ADMIN_TOKEN=sim-admin-token \
      SYNC_CONCURRENCY="$CONCURRENCY" WORKER_ID="replica-$i" LOG_LEVEL=warn \
      "$BIN" --once 2>".tmp/replicas-$n-$i.log" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do
    if wait "$p"; then rcs+=(0); else rcs+=($?); fi
  done
  took=$(($(now_ms) - started))
  claims=$(psql "$db_url" -X -At -c "select string_agg(lease_token || 'x' || n, ' ') from (select lease_token, count(*) n from sync_state group by 1 order by 1) c")
  echo "$n $took ${rcs[*]} | claims per user: $claims"
  for i in $(seq 1 "$n"); do grep -v '^{' ".tmp/replicas-$n-$i.log" | tail -n 1 | sed 's/^/    /'; done
}

echo "$USERS users, $LATENCY per request, SYNC_CONCURRENCY=$CONCURRENCY"
one=$(run 1); echo "1 replica:  $one"
many=$(run "$REPLICAS"); echo "$REPLICAS replicas: $many"
t1=$(echo "$one" | awk 'NR==1{print $2}'); tn=$(echo "$many" | awk 'NR==1{print $2}')
awk -v a="$t1" -v b="$tn" -v n="$REPLICAS" 'BEGIN { printf "ratio %d replicas / 1: %.2f (%d ms / %d ms)\n", n, b / a, b, a }'

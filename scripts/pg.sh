#!/usr/bin/env bash
# Makes a PostgreSQL server reachable for tests, benchmarks and the demo, and prints
#   export TEST_DATABASE_URL='postgres://...'
# on stdout (everything else goes to stderr). Use it as: eval "$(scripts/pg.sh)".
#
# In order: an already-set TEST_DATABASE_URL; a server on 127.0.0.1:5432; the
# machine's Debian cluster, started with pg_ctlcluster (as root); a throwaway cluster under
# .tmp/pg on port 54329 built with the local initdb. `scripts/pg.sh stop` stops the throwaway one.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tmp_dir="$root/.tmp/pg"
tmp_port=54329
default_url="postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
tmp_url="postgres://postgres@127.0.0.1:${tmp_port}/postgres?sslmode=disable"

say() { printf 'pg.sh: %s\n' "$*" >&2; }
emit() { printf "export TEST_DATABASE_URL='%s'\n" "$1"; }

# as_owner runs a command as the throwaway cluster's owner: PostgreSQL refuses to run as root.
as_owner() {
  if [ "$(id -u)" -ne 0 ]; then
    "$@"
  elif command -v runuser >/dev/null 2>&1; then
    runuser -u postgres -- "$@"
  else
    su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
  fi
}

find_bin() {
  local name=$1 found
  if command -v "$name" >/dev/null 2>&1; then
    command -v "$name"
    return
  fi
  found=$(ls -d /usr/lib/postgresql/*/bin/"$name" 2>/dev/null | sort -V | tail -n 1 || true)
  [ -n "$found" ] && echo "$found"
}

ready() { # host port
  local isready
  isready=$(find_bin pg_isready) || return 1
  "$isready" -q -h "$1" -p "$2" >/dev/null 2>&1
}

wait_ready() { # host port
  for _ in $(seq 1 60); do
    ready "$1" "$2" && return 0
    sleep 0.5
  done
  return 1
}

if [ "${1:-}" = "stop" ]; then
  if [ -f "$tmp_dir/data/postmaster.pid" ]; then
    as_owner "$(find_bin pg_ctl)" -D "$tmp_dir/data" -m fast stop >&2
  fi
  exit 0
fi

if [ -n "${TEST_DATABASE_URL:-}" ]; then
  emit "$TEST_DATABASE_URL"
  exit 0
fi
# DATABASE_URL is deliberately not used: tests create and drop databases on the server they are
# given, which must never be the one the worker writes to.

if ready 127.0.0.1 5432; then
  emit "$default_url"
  exit 0
fi
if ready 127.0.0.1 "$tmp_port"; then
  emit "$tmp_url"
  exit 0
fi

# The machine's own cluster (Debian/Ubuntu packaging), when we may start it.
if [ "$(id -u)" -eq 0 ] && command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ] &&
   [ -n "$(ls /etc/postgresql 2>/dev/null)" ]; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  say "starting the PostgreSQL $version cluster 'main'"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2 || true
  if wait_ready 127.0.0.1 5432; then
    emit "$default_url"
    exit 0
  fi
  say "cluster $version/main did not come up on 127.0.0.1:5432; trying a throwaway cluster"
fi

# A throwaway cluster under .tmp/pg: trust auth, loopback only, socket inside .tmp.
initdb=$(find_bin initdb || true)
pg_ctl=$(find_bin pg_ctl || true)
if [ -n "$initdb" ] && [ -n "$pg_ctl" ]; then
  if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    say "running as root and there is no 'postgres' user to own a throwaway cluster:"
    say "run as an ordinary user, or set TEST_DATABASE_URL to a server you have"
    exit 1
  fi
  mkdir -p "$tmp_dir/sock"
  [ "$(id -u)" -eq 0 ] && chown -R postgres "$tmp_dir"
  if [ ! -f "$tmp_dir/data/PG_VERSION" ]; then
    say "creating a throwaway cluster in $tmp_dir/data"
    as_owner "$initdb" -D "$tmp_dir/data" -U postgres --auth=trust --no-sync -E UTF8 >"$tmp_dir/initdb.log" 2>&1 || {
      say "initdb failed (is $tmp_dir reachable by the cluster's owner?); see $tmp_dir/initdb.log"
      exit 1
    }
  fi
  say "starting the throwaway cluster on 127.0.0.1:$tmp_port"
  as_owner "$pg_ctl" -D "$tmp_dir/data" -l "$tmp_dir/server.log" -w \
    -o "-p $tmp_port -k '$tmp_dir/sock' -c listen_addresses=127.0.0.1 -c fsync=off" start >&2 || {
    say "the throwaway cluster did not start; see $tmp_dir/server.log"
    exit 1
  }
  if wait_ready 127.0.0.1 "$tmp_port"; then
    emit "$tmp_url"
    exit 0
  fi
  say "the throwaway cluster is not accepting connections; see $tmp_dir/server.log"
  exit 1
fi

say "no PostgreSQL found. Install one:"
say "  Debian/Ubuntu: sudo apt-get install postgresql"
say "  macOS:         brew install postgresql@16"
say "or point TEST_DATABASE_URL at a server you can create databases on."
exit 1

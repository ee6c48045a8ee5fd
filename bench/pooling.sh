#!/usr/bin/env bash
# Connection pooling as the seed promises, through the shipped PgBouncer policy
# (compose/pgbouncer/pool.ini: transaction pooling, 25 server connections per pool, 2000 clients):
# 1000 concurrent pgbench clients must finish with 0 failed transactions. Prints tps and the
# average connection time with PgBouncer and straight to PostgreSQL, in the same run.
# Usage: bench/pooling.sh   (starts ./dev up when the stack is not running)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEV="$ROOT/.dev"
"$ROOT/dev" up >/dev/null
ulimit -n 8192
PGBENCH=$(find /usr/lib/postgresql -name pgbench -path '*/bin/*' | sort -V | tail -n 1)
PGPASSWORD=$(cat "$DEV/secrets/app_password")
export PGPASSWORD
SECONDS_EACH=${POOLING_SECONDS:-30}
SCALE=${POOLING_SCALE:-10}
"$PGBENCH" -i -q -s "$SCALE" -h 127.0.0.1 -p 15432 -U app app >/dev/null 2>&1

run() { # run LABEL PORT CLIENTS EXTRA...
  local label=$1 port=$2 clients=$3; shift 3
  local out
  out=$("$PGBENCH" -h 127.0.0.1 -p "$port" -U app -c "$clients" -j 2 -T "$SECONDS_EACH" "$@" app 2>&1) || true
  local tps failed conn processed
  tps=$(printf '%s\n' "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | tail -n 1)
  failed=$(printf '%s\n' "$out" | sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p')
  processed=$(printf '%s\n' "$out" | sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p')
  conn=$(printf '%s\n' "$out" | sed -n 's/^average connection time = \([0-9.]*\) ms/\1/p')
  [ -n "$conn" ] || conn=$(printf '%s\n' "$out" | sed -n 's/^initial connection time = \([0-9.]*\) ms/\1 (initial)/p')
  printf '%-44s %8s %10s %9s %18s\n' "$label" "${clients}" "${tps:-?}" "${failed:-?}" "${conn:-?}"
  if [ -z "$processed" ]; then printf '%s\n' "$out" | tail -n 5 >&2; fi
}

printf 'pgbench scale %s, %s s per run, transaction pooling, 25 server connections per pool\n' "$SCALE" "$SECONDS_EACH"
printf '%-44s %8s %10s %9s %18s\n' "run" "clients" "tps" "failed" "avg connect ms"
run "through PgBouncer (TPC-B)" 16432 1000
run "through PgBouncer (TPC-B, new connection each)" 16432 1000 -C
run "straight to PostgreSQL (TPC-B)" 15432 150
run "straight to PostgreSQL (TPC-B, new connection each)" 15432 150 -C
run "straight to PostgreSQL, 1000 clients (max_connections 200)" 15432 1000

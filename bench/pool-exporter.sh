#!/usr/bin/env bash
# pool-exporter vs spreaker's prometheus-pgbouncer-exporter (Python): scrape latency p50/p99 over
# 1000 scrapes and resident memory, against one PgBouncer with 500 pools, in the same run.
# Usage: bench/pool-exporter.sh     (as root or a user that may raise its fd limit)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
VENV="$TARGET/bench-venv"
# 500 pools: 500 clients + 500 server connections through one PgBouncer.
ulimit -n 8192
if [ ! -x "$VENV/bin/pgbouncer-exporter" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --no-deps prometheus-pgbouncer-exporter==2.1.2
  # Its pinned psycopg2 needs a compiler and libpq; the binary wheel is the same driver.
  "$VENV/bin/pip" install -q psycopg2-binary prometheus_client==0.8.0 python-json-logger==0.1.11 PyYAML
fi
cd "$ROOT"
PY_EXPORTER="$VENV/bin/pgbouncer-exporter" cargo bench -q -p pool-exporter --bench scrape

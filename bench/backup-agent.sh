#!/usr/bin/env bash
# backup-agent vs pg_basebackup vs pgBackRest: full backup and restore of a pgbench database
# (BENCH_SCALE, default 70, about 1 GB) in the same run, plus the WAL archiver's lag under load.
# Usage: bench/backup-agent.sh   (as root: PostgreSQL and pgBackRest run as the postgres user)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
missing=()
command -v pgbackrest >/dev/null || missing+=(pgbackrest)
command -v zstd >/dev/null || missing+=(zstd)
[ -x /usr/bin/time ] || missing+=(time)
if [ ${#missing[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cd "$ROOT"
cargo bench -q -p backup-agent --bench full

#!/usr/bin/env bash
# backup-agent's Redis snapshot vs `redis-cli --rdb`: 1 million keys (BENCH_KEYS), same replica,
# same run, disk-based and diskless transfers.
# Usage: bench/redis-snapshot.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ -x /usr/bin/time ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null
cd "$ROOT"
cargo bench -q -p backup-agent --bench redis

#!/usr/bin/env bash
# Recovery speed: archived WAL replayed through backup-agent wal-fetch (prefetch off and on,
# local storage and the harness's S3) beside the serial floor (zstd -dc, one segment at a time),
# in the same run; medians of alternating rounds and ratios to the floor.
# Usage: bench/restore.sh   (as root; BENCH_SCALE, BENCH_SECONDS, BENCH_ROUNDS to change the load)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
command -v zstd >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zstd >/dev/null
cd "$ROOT"
cargo bench -q -p backup-agent --bench restore

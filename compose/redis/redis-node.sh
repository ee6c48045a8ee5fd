#!/bin/sh
# Outrigger: starts one Redis data node in the role the Sentinels give it.
#
#   redis-node.sh SEED RUNTIME [redis-server options...]
#
# SEED is the shipped config (read-only, under version control); RUNTIME is this node's writable
# copy, made from SEED once. Sentinel's CONFIG REWRITE lands in RUNTIME, so the topology after a
# failover survives a restart, and nothing under version control is ever written.
#
# Before starting, the node asks the Sentinels who the master is (SENTINEL get-master-addr-by-name,
# the answer of a majority of the Sentinels that answer) and follows it: `replicaof no one` when the
# answer is this node, `replicaof HOST PORT` otherwise. Only when no Sentinel answers within
# REDIS_SENTINEL_WAIT seconds does it keep the role written in RUNTIME.
#
# Environment:
#   REDIS_SENTINELS       "host:port host:port ..." (none: the role in RUNTIME is used)
#   REDIS_MASTER_NAME     the monitored master's name (default mymaster)
#   REDIS_ANNOUNCE        "HOST PORT": this node as the Sentinels name it
#   REDIS_DEFAULT_MASTER  "HOST PORT" written into a new RUNTIME as its replicaof (empty: master)
#   REDIS_PASSWORD_FILE   requirepass and masterauth (given on the command line, never written
#                         by this script)
#   REDIS_SENTINEL_WAIT   seconds to wait for a Sentinel to answer (default 10)
#
# A snapshot staged by a restore (.outrigger-restore/dump.rdb in the working directory, the node's
# data dir) is loaded before the node starts: the old dump and AOF are removed, a server with no
# TCP port loads the snapshot with AOF off, then turns AOF on (which rewrites the AOF from the
# loaded data) and shuts down; the node then starts on that data. (With AOF on, Redis would start
# from an empty AOF and ignore dump.rdb.)
#
# Started as root with REDIS_RUN_AS=USER (compose: redis, the image's uid 999), the node gives its
# data dir to USER and runs as USER (gosu).
set -eu

[ $# -ge 2 ] || { echo "usage: redis-node.sh SEED RUNTIME [redis-server options...]" >&2; exit 2; }
seed=$1 runtime=$2
shift 2
name=${REDIS_MASTER_NAME:-mymaster}
wait_s=${REDIS_SENTINEL_WAIT:-10}

log() { printf 'redis-node: %s\n' "$*" >&2; }

if [ ! -s "$runtime" ]; then
  [ -r "$seed" ] || { log "cannot read the seed config $seed"; exit 1; }
  umask 077
  tmp="$runtime.new"
  cp "$seed" "$tmp"
  if [ -n "${REDIS_DEFAULT_MASTER:-}" ]; then
    printf '\n# Outrigger: first role of this node; Sentinel rewrites it after a failover.\nreplicaof %s\n' \
      "$REDIS_DEFAULT_MASTER" >> "$tmp"
  fi
  mv "$tmp" "$runtime"
  log "made $runtime from $seed"
fi

# Prints "HOST PORT" as one Sentinel names the master, or nothing.
ask() {
  timeout 2 redis-cli -h "${1%:*}" -p "${1##*:}" --raw SENTINEL get-master-addr-by-name "$name" \
    2>/dev/null | tr '\n' ' ' | awk 'NF == 2 && $2 ~ /^[0-9]+$/ { print $1, $2 }'
}

# The master named by a majority of the Sentinels that answer; nothing when none answers or
# they disagree without a majority.
master_by_majority() {
  answers="" answered=0
  for s in ${REDIS_SENTINELS:-}; do
    a=$(ask "$s" || true)
    if [ -n "$a" ]; then
      answers="$answers$a
"
      answered=$((answered + 1))
    fi
  done
  [ "$answered" -gt 0 ] || return 0
  printf '%s' "$answers" | sort | uniq -c | sort -rn | awk -v n="$answered" \
    'NR == 1 && $1 * 2 > n { print $2, $3 }'
}

master=""
if [ -n "${REDIS_SENTINELS:-}" ]; then
  deadline=$(( $(date +%s) + wait_s ))
  while :; do
    master=$(master_by_majority)
    [ -n "$master" ] && break
    [ "$(date +%s)" -lt "$deadline" ] || break
    sleep 1
  done
  if [ -z "$master" ]; then
    log "no Sentinel answered for $name within ${wait_s}s: keeping the role in $runtime"
  fi
fi

# Loads a staged snapshot (see above).
load_staged() {
  staged=.outrigger-restore/dump.rdb
  [ -s "$staged" ] || return 0
  log "loading the restored snapshot $staged"
  rm -rf appendonlydir dump.rdb
  mv "$staged" dump.rdb
  sock=/tmp/redis-node-restore.sock
  redis-server "$runtime" --port 0 --unixsocket "$sock" --unixsocketperm 700 --appendonly no \
    --replicaof no one --daemonize no --save "" &
  pid=$!
  i=0
  until redis-cli -s "$sock" ping 2>/dev/null | grep -q PONG; do
    i=$((i + 1))
    [ "$i" -lt 600 ] || { log "the snapshot did not load within 10 minutes"; kill "$pid"; exit 1; }
    kill -0 "$pid" 2>/dev/null || { log "redis-server could not load the snapshot"; exit 1; }
    sleep 1
  done
  redis-cli -s "$sock" config set appendonly yes >/dev/null
  i=0
  until redis-cli -s "$sock" info persistence | tr -d '\r' | grep -q '^aof_rewrite_in_progress:0' &&
        redis-cli -s "$sock" info persistence | tr -d '\r' | grep -q '^aof_rewrite_scheduled:0' &&
        [ -f appendonlydir/appendonly.aof.manifest ]; do
    i=$((i + 1))
    [ "$i" -lt 600 ] || { log "the AOF was not written within 10 minutes"; kill "$pid"; exit 1; }
    sleep 1
  done
  redis-cli -s "$sock" info persistence | tr -d '\r' | grep -q '^aof_last_bgrewrite_status:ok' ||
    { log "writing the AOF from the snapshot failed"; kill "$pid"; exit 1; }
  redis-cli -s "$sock" shutdown save >/dev/null 2>&1 || true
  wait "$pid" || true
  rmdir .outrigger-restore 2>/dev/null || true
  log "the restored snapshot is loaded (keys: in dump.rdb and the new AOF)"
}
load_staged

if [ -n "${REDIS_PASSWORD_FILE:-}" ]; then
  pw=$(cat "$REDIS_PASSWORD_FILE")
  set -- --requirepass "$pw" --masterauth "$pw" "$@"
fi
if [ -z "$master" ]; then
  :
elif [ "$master" = "${REDIS_ANNOUNCE:-}" ]; then
  log "the Sentinels name this node ($master) the master of $name: starting as master"
  set -- --replicaof no one "$@"
else
  log "the Sentinels name $master the master of $name: starting as its replica"
  set -- --replicaof "${master% *}" "${master#* }" "$@"
fi
if [ -n "${REDIS_RUN_AS:-}" ] && [ "$(id -u)" = 0 ]; then
  chown -R "$REDIS_RUN_AS:" .
  exec gosu "$REDIS_RUN_AS" redis-server "$runtime" "$@"
fi
exec redis-server "$runtime" "$@"

#!/usr/bin/env bash
# The compose stack for real: the shipped compose file and docker-manage.sh on a Docker engine,
# with stand-ins for the upstream images (tests/compose/images, from Debian's packages: no
# registry is reachable here) and our image built from the shipped Dockerfile. Run by
# `./dev compose-test` and `./dev test`, as root.
#
#   tests/compose/e2e.sh
#
# Scenario (each step asserted; docs/compose.md is the runbook it follows):
#   start -> every service healthy; health exits 0 after the first backup; backup postgres-full,
#   backup redis; rows written, restore postgres --time T -> exactly the rows before T; a Redis
#   key changed, every node stopped until the Sentinels try a failover, restore redis -> the
#   snapshot's value; docker kill the Redis master -> Sentinel fails over within 60 s (the
#   restore reset the Sentinels' 2-minute hold-off) and sentinel-watch logs it; stop + start ->
#   same master, healthy; upgrade (every container recreated) -> same master, same rows, health 0;
#   Prometheus has the four daemon targets up and Alertmanager, whose alerts reach health.log;
#   stop leaves no container running.
#
# Uses the engine that answers, else starts dockerd with its own socket, pidfile and data root
# under .dev/docker (stopped and removed afterwards). Removes the containers, networks, volumes and
# images it made; keeps only the debootstrap tarball (.dev/compose-e2e/base-KEY.tar, rebuilt when
# the package list or the apt sources change). Environment: E2E_TIMEOUT (seconds for the whole
# run, default 1800), E2E_KEEP=1 (leave the stack up on failure, to look at it).
# The cleanup functions run from the EXIT trap, which shellcheck does not follow.
# shellcheck disable=SC2317
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DEV="$ROOT/.dev"
WORK="$DEV/compose-e2e"
IMAGES="$ROOT/tests/compose/images"
MANAGE="$ROOT/compose/docker-manage.sh"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
DEADLINE=$((SECONDS + ${E2E_TIMEOUT:-1800}))
# What the base image has beyond debootstrap's minbase.
BASE_PACKAGES="ca-certificates"

say() { printf 'compose-e2e: %s\n' "$*"; }
FAILURE=""
fail() { FAILURE="$*"; printf 'compose-e2e: FAILED: %s\n' "$*" >&2; exit 1; }
left() { [ "$SECONDS" -lt "$DEADLINE" ] || fail "out of time (E2E_TIMEOUT=${E2E_TIMEOUT:-1800}s) during: $*"; }

# ---------------------------------------------------------------------------------------------
# The engine.
STARTED_DOCKERD=""
start_engine() {
  if docker info >/dev/null 2>&1; then
    say "using the Docker engine that answers ($(docker info -f '{{.ServerVersion}}'))"
    return 0
  fi
  command -v dockerd >/dev/null 2>&1 || fail "no Docker engine answers and dockerd is not installed (apt-get install docker.io)"
  local d="$DEV/docker"
  mkdir -p "$d"
  if [ -f "$d/docker.pid" ] && kill -0 "$(cat "$d/docker.pid")" 2>/dev/null; then
    kill "$(cat "$d/docker.pid")"
    sleep 3
  fi
  export DOCKER_HOST="unix://$d/docker.sock"
  dockerd --data-root "$d/data" --exec-root "$d/exec" --pidfile "$d/docker.pid" -H "$DOCKER_HOST" \
    >"$d/dockerd.log" 2>&1 &
  STARTED_DOCKERD=$!
  local i
  for ((i = 0; i < 60; i++)); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$STARTED_DOCKERD" 2>/dev/null || { tail -n 20 "$d/dockerd.log" >&2; fail "dockerd exited: it cannot run here (log above)"; }
    sleep 1
  done
  docker info >/dev/null 2>&1 || { tail -n 20 "$d/dockerd.log" >&2; fail "dockerd did not answer within 60 s"; }
  say "started dockerd $(docker info -f '{{.ServerVersion}}') (data root $d/data)"
}

stop_engine() {
  [ -n "$STARTED_DOCKERD" ] || return 0
  kill "$STARTED_DOCKERD" 2>/dev/null || true
  local i
  for ((i = 0; i < 30; i++)); do
    kill -0 "$STARTED_DOCKERD" 2>/dev/null || break
    sleep 1
  done
  kill -9 "$STARTED_DOCKERD" 2>/dev/null || true
  rm -rf "$DEV/docker"
}

# ---------------------------------------------------------------------------------------------
# Images.

# The Debian mirror and suite of this machine's apt sources (deb822 or one-line format).
debian_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk '/^URIs:/ { u = $2 } /^Suites:/ { s = $2 } /^$/ { if (u != "" && u !~ /security/) { print u, s; exit } u = "" }
         END { if (u != "" && u !~ /security/) print u, s }' "$f" | head -n 1
  done
  if [ -f /etc/apt/sources.list ]; then
    awk '$1 == "deb" && $2 !~ /security/ && $2 !~ /^\[/ { print $2, $3; exit }' /etc/apt/sources.list
  fi
}

base_image() {
  local mirror suite key tar
  read -r mirror suite < <(debian_mirror | head -n 1) || true
  [ -n "${mirror:-}" ] || fail "no Debian mirror in /etc/apt/sources.list{,.d}"
  suite=${suite:-bookworm}
  key=$( { echo "$mirror $suite $BASE_PACKAGES"; cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null || true; } \
    | sha256sum | cut -c1-12)
  tar="$WORK/base-$key.tar"
  if [ ! -s "$tar" ]; then
    say "debootstrap $suite from $mirror (cached as $tar)"
    local root="$WORK/rootfs"
    rm -rf "$root" "$WORK"/base-*.tar
    mkdir -p "$WORK"
    debootstrap --variant=minbase --include="${BASE_PACKAGES// /,}" "$suite" "$root" "$mirror" \
      >"$WORK/debootstrap.log" 2>&1 || { tail -n 20 "$WORK/debootstrap.log" >&2; fail "debootstrap failed"; }
    # The machine's own apt sources (updates and security included), and no recommends.
    rm -f "$root/etc/apt/sources.list"
    cp /etc/apt/sources.list.d/* "$root/etc/apt/sources.list.d/" 2>/dev/null || true
    if [ -f /etc/apt/sources.list ]; then cp /etc/apt/sources.list "$root/etc/apt/sources.list"; fi
    printf 'APT::Install-Recommends "false";\n' > "$root/etc/apt/apt.conf.d/90outrigger"
    rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*
    tar -C "$root" -cf "$tar.new" . && mv "$tar.new" "$tar"
    rm -rf "$root"
  fi
  # Imported once per tarball (a new import would invalidate every build cache above it).
  if ! docker image inspect "outrigger-e2e/base:$key" >/dev/null 2>&1; then
    docker import "$tar" "outrigger-e2e/base:$key" >/dev/null
  fi
  docker tag "outrigger-e2e/base:$key" outrigger-e2e/base
  say "base image outrigger-e2e/base from $tar"
}

build_images() {
  local n
  for n in postgres pgbouncer redis prometheus alertmanager; do
    left "building $n"
    say "building the $n stand-in"
    docker build -q --build-arg BASE_IMAGE=outrigger-e2e/base -t "outrigger-e2e/$n" "$IMAGES/$n" >/dev/null \
      || fail "building the $n stand-in image failed"
  done
  # Our image takes the host's binaries (built by cargo for the tests), without debug info.
  mkdir -p "$DEV/image-bin"
  for n in backup-agent health-agent sentinel-watch pool-exporter; do
    [ -x "$TARGET/debug/$n" ] || fail "no $TARGET/debug/$n: run cargo build first"
    objcopy --strip-debug "$TARGET/debug/$n" "$DEV/image-bin/$n"
  done
}

# ---------------------------------------------------------------------------------------------
# The network. Every Redis node and Sentinel of the stack reaches the others over one
# user-defined bridge; when a host filters bridged traffic (br_netfilter passes it to iptables,
# and a FORWARD policy or another table drops what the engine's own rules let through), each of
# them waits for the others until its timeouts and the test fails minutes later with nothing but
# timeouts in the logs. This finds that in seconds, with what the host's filters say.
PROBE_NET=outrigger-e2e-probe
RESTORE_BRNF=""

network_report() {
  echo "--- engine: $(docker info -f '{{.ServerVersion}} {{.OperatingSystem}} iptables={{.BridgeNfIptables}} ip_forward={{.IPv4Forwarding}}' 2>&1)"
  docker info 2>&1 | grep -i warning || true
  echo "--- sysctl: $(sysctl -n net.ipv4.ip_forward 2>&1) ip_forward, $(sysctl -n net.bridge.bridge-nf-call-iptables 2>&1) bridge-nf-call-iptables"
  echo "--- addresses"; ip -br addr 2>&1
  echo "--- routes"; ip route 2>&1
  echo "--- iptables (filter, nat)"; { iptables -S; iptables -t nat -S; } 2>&1 | grep -v '^-N' | head -n 60
  echo "--- iptables-legacy (filter)"; iptables-legacy -S 2>&1 | head -n 20
  if [ -n "$STARTED_DOCKERD" ]; then
    echo "--- dockerd log"; tail -n 15 "$DEV/docker/dockerd.log" 2>&1
  fi
}

probe_once() {
  docker rm -f "$PROBE_NET-server" >/dev/null 2>&1 || true
  docker network rm "$PROBE_NET" >/dev/null 2>&1 || true
  # The compose network's own layout: a fixed address below the dynamic range.
  docker network create --subnet 172.25.0.0/16 --ip-range 172.25.128.0/17 "$PROBE_NET" >/dev/null \
    || { echo "cannot create a bridge network 172.25.0.0/16"; return 1; }
  docker run -d --name "$PROBE_NET-server" --network "$PROBE_NET" --ip 172.25.0.50 outrigger-e2e/redis \
    redis-server --protected-mode no --save '' >/dev/null || { echo "cannot start a container"; return 1; }
  local rc=0
  # shellcheck disable=SC2016 # expanded in the container
  docker run --rm --network "$PROBE_NET" outrigger-e2e/redis sh -c \
    'for i in 1 2 3 4 5 6 7 8 9 10; do [ "$(timeout 2 redis-cli -h 172.25.0.50 ping 2>/dev/null)" = PONG ] && exit 0; sleep 1; done; exit 1' \
    || rc=1
  docker rm -f "$PROBE_NET-server" >/dev/null 2>&1 || true
  docker network rm "$PROBE_NET" >/dev/null 2>&1 || true
  return "$rc"
}

probe_network() {
  left "checking the container network"
  if probe_once; then
    say "containers reach each other on a bridge network"
    return 0
  fi
  say "a container cannot reach another on the same bridge network; the host's filters:"
  network_report >&2
  [ "$(sysctl -n net.bridge.bridge-nf-call-iptables 2>/dev/null)" = 1 ] \
    || fail "containers on one bridge network cannot reach each other (report above)"
  # Bridged frames then bypass iptables altogether; routed traffic (NAT to the mirror) does not.
  say "trying again with net.bridge.bridge-nf-call-iptables=0 (put back to 1 at the end)"
  sysctl -qw net.bridge.bridge-nf-call-iptables=0 && RESTORE_BRNF=1
  probe_once || fail "containers on one bridge network cannot reach each other, even with bridged traffic kept out of iptables (report above)"
  say "containers reach each other with bridged traffic kept out of iptables"
}

# ---------------------------------------------------------------------------------------------
# The stack.
export COMPOSE_PROJECT_NAME=outrigger-e2e
export OUTRIGGER_ENV_FILE="$WORK/env"
export OUTRIGGER_SECRETS_DIR="$WORK/secrets"
export OUTRIGGER_COMPOSE_OVERRIDE="$ROOT/tests/compose/override.yml"
export OUTRIGGER_WAIT=300
SERVICES=(postgres pgbouncer redis-master redis-replica-1 redis-replica-2 redis-sentinel-1
  redis-sentinel-2 redis-sentinel-3 backup-agent health-agent sentinel-watch pool-exporter
  prometheus alertmanager)

manage() { left "docker-manage.sh $*"; "$MANAGE" "$@"; }
dc() { docker-compose -f "$ROOT/compose/docker-compose.yml" -f "$OUTRIGGER_COMPOSE_OVERRIDE" --env-file "$OUTRIGGER_ENV_FILE" "$@"; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
psql_app() { dc exec -T postgres psql -X -v ON_ERROR_STOP=1 -U postgres -d app -Atc "$1"; }
redis_cmd() { # redis_cmd SERVICE ARGS...
  local svc=$1; shift
  # shellcheck disable=SC2016 # expanded in the container
  dc exec -T "$svc" sh -c 'redis-cli --no-auth-warning -a "$(cat /run/secrets/redis_password)" "$@"' sh "$@" | tr -d '\r'
}
sentinel_master() { dc exec -T redis-sentinel-1 redis-cli -p 26379 --raw sentinel get-master-addr-by-name mymaster | tr -d '\r' | head -n 1; }

PROM_PORT=""
write_env() {
  mkdir -p "$WORK"
  rm -rf "$OUTRIGGER_SECRETS_DIR"
  PROM_PORT=$(free_port)
  sed -e "s/^\(PGBOUNCER_PORT\)=.*/\1=$(free_port)/" -e "s/^\(GRAFANA_PORT\)=.*/\1=$(free_port)/" \
      -e "s/^\(PROMETHEUS_PORT\)=.*/\1=$PROM_PORT/" -e "s/change-me-\([a-z-]*\)/e2e-\1-$RANDOM$RANDOM/" \
      "$ROOT/compose/.env.example" > "$OUTRIGGER_ENV_FILE"
  # A container cannot raise its open-file limit above the engine's.
  local nofile
  nofile=$(ulimit -Hn)
  if [ "$nofile" != unlimited ] && [ "$nofile" -lt 65536 ]; then
    echo "PGBOUNCER_NOFILE=$nofile" >> "$OUTRIGGER_ENV_FILE"
  fi
}

cleanup() {
  local rc=$?
  set +e
  if [ "$rc" != 0 ] && [ "${E2E_KEEP:-0}" = 1 ]; then
    say "E2E_KEEP=1: the stack is left up (COMPOSE_PROJECT_NAME=$COMPOSE_PROJECT_NAME, DOCKER_HOST=${DOCKER_HOST:-default})"
    exit "$rc"
  fi
  if [ "$rc" != 0 ]; then
    say "logs of the services (last lines):"
    dc logs --no-color --tail=25 >&2 2>/dev/null
    # Last, where a truncated CI log still shows it: the network as the host sees it, and why.
    network_report >&2
    say "FAILED: ${FAILURE:-exit status $rc}" >&2
  fi
  dc --profile tools down -v --remove-orphans >/dev/null 2>&1
  docker images --format '{{.Repository}}:{{.Tag}}' | grep '^outrigger-e2e/' | xargs -r docker image rm -f >/dev/null 2>&1
  docker image prune -f >/dev/null 2>&1
  rm -rf "$DEV/image-bin" "$OUTRIGGER_SECRETS_DIR" "$OUTRIGGER_ENV_FILE"
  docker rm -f "$PROBE_NET-server" >/dev/null 2>&1
  docker network rm "$PROBE_NET" >/dev/null 2>&1
  stop_engine
  [ -z "$RESTORE_BRNF" ] || sysctl -qw net.bridge.bridge-nf-call-iptables=1
  exit "$rc"
}

main() {
  for t in docker docker-compose debootstrap objcopy python3; do
    command -v "$t" >/dev/null 2>&1 || fail "$t is not installed"
  done
  [ "$(id -u)" = 0 ] || fail "run as root (dockerd, debootstrap)"
  trap cleanup EXIT
  start_engine
  base_image
  build_images
  probe_network
  write_env
  # What an earlier run left (E2E_KEEP=1).
  dc --profile tools down -v --remove-orphans >/dev/null 2>&1 || true

  say "== start"
  manage start "${SERVICES[@]}"

  local svc uid
  for svc in redis-master redis-replica-1 redis-replica-2 redis-sentinel-1 redis-sentinel-2 redis-sentinel-3; do
    uid=$(dc exec -T "$svc" grep '^Uid:' /proc/1/status | tr -d '\r' | cut -f 2)
    if [ -z "$uid" ] || [ "$uid" = 0 ]; then fail "$svc runs as root (uid ${uid:-unknown})"; fi
  done
  say "the Redis nodes and Sentinels run as uid $uid, not root"

  say "== the first backup, then health"
  local i=0 out
  until dc exec -T backup-agent backup-agent -c /etc/outrigger/backup-agent.toml list 2>/dev/null | grep -q postgres-full; do
    i=$((i + 1)); [ "$i" -lt 150 ] || fail "no first full backup (schedule.initial_full) within 5 minutes"
    sleep 2
  done
  # health-agent checks every interval; its first round may predate the backup.
  manage health || fail "docker-manage.sh health did not exit 0"

  say "== backup now"
  manage backup postgres-full || fail "backup postgres-full"
  manage backup redis || fail "backup redis"
  manage list

  say "== restore postgres to a time"
  psql_app "CREATE TABLE e2e (n int); INSERT INTO e2e SELECT generate_series(1, 100);"
  sleep 1.5
  local t
  t=$(psql_app "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
  sleep 1.5
  psql_app "INSERT INTO e2e SELECT generate_series(101, 250);"
  manage backup postgres-incr || fail "backup postgres-incr (switches and archives the WAL past T)"
  manage restore postgres --time "$t" | tee "$WORK/restore.out" || fail "restore postgres --time $t"
  out=$(psql_app "SELECT count(*), max(n) FROM e2e")
  [ "$out" = "100|100" ] || fail "after restore to $t: rows $out, want 100|100"
  grep -q "recovered to LSN" "$WORK/restore.out" || fail "the restore did not print the point it reached"
  say "restored to $t: exactly the 100 rows written before it"

  say "== restore redis"
  local m
  m=$(sentinel_master)
  redis_cmd "$m" set e2e:key before >/dev/null
  manage backup redis || fail "backup redis"
  redis_cmd "$m" set e2e:key after >/dev/null
  # First every node down for longer than down-after, as a slow restore would have them: the
  # Sentinels try a failover, find no replica, and then start no other for 2 minutes
  # (2 x failover-timeout). The restore must leave them able to fail over: the drill below
  # gives them 60 s.
  local tried sentinels=(redis-sentinel-1 redis-sentinel-2 redis-sentinel-3)
  out=$(dc logs --no-color "${sentinels[@]}" 2>/dev/null || true)
  tried=$(grep -c 'failover-abort-no-good-slave' <<<"$out" || true)
  dc stop redis-master redis-replica-1 redis-replica-2 >/dev/null 2>&1
  for ((i = 0; i < 60; i++)); do
    out=$(dc logs --no-color "${sentinels[@]}" 2>/dev/null || true)
    [ "$(grep -c 'failover-abort-no-good-slave' <<<"$out" || true)" -gt "$tried" ] && break
    sleep 1
  done
  [ "$i" -lt 60 ] || fail "the Sentinels did not try a failover within 60 s of every Redis node stopped"
  dc start redis-master redis-replica-1 redis-replica-2 >/dev/null 2>&1
  manage restore redis || fail "restore redis"
  m=$(sentinel_master)
  out=$(redis_cmd "$m" get e2e:key)
  [ "$out" = before ] || fail "after restore redis: e2e:key is '$out' on $m, want 'before'"
  say "Redis restored into $m: the snapshot's value is back"

  say "== failover drill: docker kill the Redis master"
  local old new before
  old=$(sentinel_master)
  # The restore above may have ended in a summary of its own: wait for one more than now.
  out=$(dc logs --no-color sentinel-watch 2>/dev/null || true)
  before=$(grep -c 'event=failover_summary' <<<"$out" || true)
  docker kill "$(dc ps -q "$old")" >/dev/null
  new=$old
  for ((i = 0; i < 60; i++)); do
    new=$(sentinel_master || true)
    if [ -n "$new" ] && [ "$new" != "$old" ]; then break; fi
    sleep 1
  done
  [ "$new" != "$old" ] || fail "no failover within 60 s after docker kill $old"
  # (Whole logs into a variable: grep -q on a pipe would fail the pipeline with SIGPIPE.)
  for ((i = 0; i < 30; i++)); do
    out=$(dc logs --no-color sentinel-watch 2>/dev/null || true)
    [ "$(grep -c 'event=failover_summary' <<<"$out" || true)" -gt "$before" ] && break
    sleep 1
  done
  # On a failure below, sentinel-watch's event log (every Sentinel event it heard), not the
  # 25 lines per service the cleanup prints.
  drill_log() { dc exec -T sentinel-watch tail -n 150 /backups/logs/sentinel-events.log >&2 || true; }
  local summary ms
  # (A failover_aborted line of the Redis restore's stop of every node may come before it.)
  [ "$(grep -c 'event=failover_summary' <<<"$out" || true)" -gt "$before" ] ||
    { drill_log; fail "sentinel-watch logged no failover within 30 s of the new master"; }
  summary=$(grep 'event=failover_summary' <<<"$out" | tail -n 1)
  # Its own failover, not one begun by that stop.
  grep -q 'trigger=automatic' <<<"$summary" ||
    { drill_log; fail "the failover is not summarised as automatic: $summary"; }
  ms=$(grep -o 'duration_ms=[0-9]*' <<<"$summary" | head -n 1 | cut -d= -f2)
  if [ -z "$ms" ] || [ "$ms" -ge 30000 ]; then
    drill_log
    fail "the failover took ${ms:-?} ms by sentinel-watch's summary: $summary"
  fi
  say "Sentinels promoted $new after $old was killed; sentinel-watch: automatic, ${ms} ms"
  # Its figures, and what the Redis restore's restart took (reported apart, not as this failover's).
  say "sentinel-watch: $(grep -o 'write_downtime_ms=[0-9]* lost_writes=[0-9]* lost_replicated=[0-9]* writes_checked=[0-9]*' <<<"$summary" || true)"
  grep 'event=master_restarted' <<<"$out" | tail -n 1 || true
  # Prometheus -> Alertmanager -> health-agent's /alerts -> health.log.
  for ((i = 0; i < 90; i++)); do
    dc exec -T health-agent grep -q 'event=alert alertname=RedisFailoverHappened status=firing' \
      /backups/logs/health.log 2>/dev/null && break
    sleep 2
  done
  dc exec -T health-agent grep 'event=alert' /backups/logs/health.log | tail -n 3 || true
  dc exec -T health-agent grep -q 'event=alert alertname=RedisFailoverHappened status=firing' \
    /backups/logs/health.log || fail "the RedisFailoverHappened alert did not reach health.log within 3 minutes"

  say "== stop, start: the same master"
  manage stop
  manage start "${SERVICES[@]}"
  [ "$(sentinel_master)" = "$new" ] || fail "after stop/start the master is '$(sentinel_master)', not $new"
  [ "$(redis_cmd "$old" info replication | sed -n 's/^role://p')" = slave ] \
    || fail "the old master $old is not a replica after the restart"

  say "== upgrade: every container recreated"
  manage upgrade "${SERVICES[@]}" || fail "docker-manage.sh upgrade"
  [ "$(sentinel_master)" = "$new" ] || fail "after the upgrade the master is '$(sentinel_master)', not $new"
  out=$(psql_app "SELECT count(*) FROM e2e")
  [ "$out" = 100 ] || fail "after the upgrade: $out rows, want 100"

  say "== Prometheus"
  local targets
  for ((i = 0; i < 60; i++)); do
    targets=$(curl -fsS "http://127.0.0.1:$PROM_PORT/api/v1/query?query=up" \
      | python3 -c 'import json,sys; print(" ".join(sorted(r["metric"]["job"] for r in json.load(sys.stdin)["data"]["result"] if r["value"][1] == "1")))' || true)
    [ "$targets" = "backup-agent health-agent pool-exporter sentinel-watch" ] && break
    sleep 2
  done
  [ "$targets" = "backup-agent health-agent pool-exporter sentinel-watch" ] || fail "Prometheus targets up: '$targets'"
  curl -fsS "http://127.0.0.1:$PROM_PORT/api/v1/alertmanagers" | grep -q '"activeAlertmanagers":\[{' \
    || fail "Prometheus has no active Alertmanager"
  say "Prometheus: the four daemons up, Alertmanager active"

  say "== stop"
  manage stop
  [ -z "$(dc ps -q | xargs -r docker inspect -f '{{if .State.Running}}{{.Name}}{{end}}' | tr -d '\n')" ] \
    || fail "containers still running after stop"
  say "PASSED in ${SECONDS}s"
}

# One line, so that bash has read it all before running it (an edit of this file while it runs
# cannot run anything else).
{ main "$@"; exit; }

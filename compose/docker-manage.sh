#!/usr/bin/env bash
# Outrigger's management script: every command maps onto docker compose and the daemons' own CLIs.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Where the passwords come from and where their files go, and an optional compose override file
# (another stack on the same engine, a test): defaults compose/.env, compose/secrets, none.
ENV_FILE=${OUTRIGGER_ENV_FILE:-$HERE/.env}
SECRETS=${OUTRIGGER_SECRETS_DIR:-$HERE/secrets}
export OUTRIGGER_SECRETS_DIR="$SECRETS"
OVERRIDE=${OUTRIGGER_COMPOSE_OVERRIDE:-}
# Seconds to wait for a service to become healthy after start or restore.
WAIT=${OUTRIGGER_WAIT:-300}

usage() {
  cat <<'TXT'
Usage: ./docker-manage.sh COMMAND

  start [SERVICE...]          create secrets from compose/.env if missing, build, start everything
                              (or the services named, with what they depend on), wait until healthy
  stop                        stop everything (volumes are kept)
  upgrade [SERVICE...]        after a git pull: a full backup first, then rebuild our image and
                              recreate every container (data stays in the volumes), wait until
                              healthy, run the health checks
  health                      run every health check now (exit 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN)
  logs SERVICE                follow a service's logs (e.g. backup-agent, pgbouncer)
  pgbouncer pools|stats       PgBouncer's pools or per-database statistics
  redis sentinel|replicas     Sentinel's view of the master, or the replicas with their lag
  redis switchover [--to HOST:PORT]
                              planned change of master without losing acknowledged writes
  backup postgres-full|postgres-incr|postgres-logical|redis
                              run a backup now
  list                        the backups, and the span PostgreSQL can be recovered to
  restore postgres [--time T | --lsn L | --backup ID]
                              stop postgres, restore into its volume (default: to the end of the
                              archived WAL), replay and promote, start it; prints the point reached.
                              The old data directory is replaced only once recovery succeeded.
  restore redis [--backup ID] load a snapshot (default: the newest) into the current master, then
                              restart the replicas from it
  verify [ID]                 re-read backups from storage and check every checksum
  help                        this text
TXT
}

die() { printf 'docker-manage.sh: %s\n' "$*" >&2; exit 1; }
say() { printf 'docker-manage.sh: %s\n' "$*" >&2; }

compose() {
  local files=(-f "$HERE/docker-compose.yml")
  if [ -n "$OVERRIDE" ]; then files+=(-f "$OVERRIDE"); fi
  if docker compose version >/dev/null 2>&1; then
    docker compose "${files[@]}" --env-file "$ENV_FILE" "$@"
  elif command -v docker-compose >/dev/null 2>&1; then
    docker-compose "${files[@]}" --env-file "$ENV_FILE" "$@"
  else
    die "docker compose is not installed (https://docs.docker.com/compose/install/)"
  fi
}

need_docker() {
  command -v docker >/dev/null 2>&1 || die "docker is not installed"
  docker info >/dev/null 2>&1 || die "the Docker engine is not reachable (is it running, and may this user use it?)"
  [ -f "$ENV_FILE" ] || die "no $ENV_FILE: copy compose/.env.example to compose/.env and set the passwords"
}

# Compose bind-mounts file secrets with the host file's owner and mode (the long syntax's
# uid/gid/mode are ignored for them), and the services run as their own users (postgres, our
# daemons' uid 10001, pgbouncer, prometheus): the files are 0644 so that each can read its own,
# inside compose/secrets, which is 0700 so that no other user on the host can.
secrets() {
  mkdir -p "$SECRETS"
  chmod 700 "$SECRETS"
  set -a
  # shellcheck source=/dev/null
  . "$ENV_FILE"
  set +a
  local name var
  for name in postgres app replicator monitor pgb_admin pgb_stats redis grafana_admin; do
    var=$(printf '%s_PASSWORD' "$name" | tr '[:lower:]' '[:upper:]')
    [ -n "${!var:-}" ] || die "$var is not set in $ENV_FILE"
    if [ ! -s "$SECRETS/${name}_password" ]; then
      printf '%s' "${!var}" > "$SECRETS/${name}_password"
      chmod 644 "$SECRETS/${name}_password"
    fi
  done
  # PgBouncer's users from the secret files (made once, like the roles' passwords in PostgreSQL),
  # so that the two never disagree when compose/.env changes later.
  {
    for name in app pgb_admin pgb_stats; do
      printf '"%s" "%s"\n' "$name" "$(cat "$SECRETS/${name}_password")"
    done
  } > "$SECRETS/userlist.txt"
  chmod 644 "$SECRETS/userlist.txt"
}

exec_in() { # exec_in SERVICE COMMAND...
  local svc=$1; shift
  compose exec -T "$svc" "$@"
}

# Waits until every service named (default: every running one) is healthy; names the laggards.
wait_healthy() {
  local deadline=$((SECONDS + WAIT)) ids id state bad
  while :; do
    bad=""
    ids=$(compose ps -q "$@")
    [ -n "$ids" ] || die "no container for: ${*:-any service}"
    for id in $ids; do
      state=$(docker inspect -f '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}' "$id")
      case $state in
        *" running healthy" | *" running ") ;;
        *) bad="$bad ${state%% *}(${state#* })" ;;
      esac
    done
    [ -z "$bad" ] && return 0
    [ "$SECONDS" -lt "$deadline" ] || die "not healthy after ${WAIT}s:$bad (docker-manage.sh logs SERVICE)"
    sleep 2
  done
}

SENTINELS=(redis-sentinel-1 redis-sentinel-2 redis-sentinel-3)

# "HOST PORT" of the Redis master, as the first Sentinel that answers names it.
redis_master() {
  local s a
  for s in "${SENTINELS[@]}"; do
    a=$(exec_in "$s" redis-cli -p 26379 --raw sentinel get-master-addr-by-name mymaster 2>/dev/null | tr '\n' ' ') || continue
    if [ -n "${a// /}" ]; then printf '%s\n' "${a% }"; return 0; fi
  done
  return 1
}

restore_postgres() {
  local rc=0
  say "stopping postgres"
  compose stop postgres
  compose run --rm --no-deps -T restore sh /usr/local/bin/outrigger-restore.sh postgres "$@" || rc=$?
  say "starting postgres"
  compose start postgres
  wait_healthy postgres
  [ "$rc" = 0 ] || die "restore failed (exit $rc): postgres runs on its old data"
}

restore_redis() {
  local master node nodes=(redis-master redis-replica-1 redis-replica-2) n
  master=$(redis_master) || die "no Sentinel names the Redis master"
  node=${master% *}
  say "the master is $node: loading the snapshot there"
  compose run --rm --no-deps -T restore sh /usr/local/bin/outrigger-restore.sh redis "$node" "$@"
  compose stop "${nodes[@]}"
  compose start "$node"
  wait_healthy "$node"
  for n in "${nodes[@]}"; do
    if [ "$n" != "$node" ]; then compose start "$n"; fi
  done
  wait_healthy "${nodes[@]}"
  say "restored into $node; the replicas resynchronised from it"
  sentinels_reset $((${#nodes[@]} - 1))
}

# While every node was stopped the Sentinels may have tried a failover (and found no replica):
# each then starts no new failover of this master for twice its failover-timeout, 2 minutes
# here. SENTINEL RESET clears that, and what each knew of the replicas and of the other
# Sentinels, which it finds again within seconds; this waits until it has.
sentinels_reset() { # sentinels_reset REPLICAS
  local s deadline=$((SECONDS + 60))
  for s in "${SENTINELS[@]}"; do
    exec_in "$s" redis-cli -p 26379 sentinel reset mymaster >/dev/null || die "SENTINEL RESET mymaster failed on $s"
  done
  for s in "${SENTINELS[@]}"; do
    until sentinel_knows "$s" "$1" $((${#SENTINELS[@]} - 1)); do
      [ "$SECONDS" -lt "$deadline" ] ||
        die "$s does not know $1 replicas and the other Sentinels 60 s after SENTINEL RESET (docker-manage.sh logs $s)"
      sleep 1
    done
  done
  say "Sentinels reset: each knows the master, $1 replicas and the other Sentinels, and can fail over"
}

# Whether Sentinel SERVICE knows at least REPLICAS replicas and SENTINELS other Sentinels.
sentinel_knows() { # sentinel_knows SERVICE REPLICAS SENTINELS
  local out replicas others
  out=$(exec_in "$1" redis-cli -p 26379 --raw sentinel master mymaster 2>/dev/null | tr -d '\r') || return 1
  replicas=$(awk '$0 == "num-slaves" { getline; print }' <<<"$out")
  others=$(awk '$0 == "num-other-sentinels" { getline; print }' <<<"$out")
  [ "${replicas:-0}" -ge "$2" ] && [ "${others:-0}" -ge "$3" ]
}

cmd=${1:-help}
[ $# -gt 0 ] && shift
case $cmd in
  start)
    need_docker; secrets
    compose up -d --build "$@"
    wait_healthy
    compose ps ;;
  stop)
    need_docker; compose stop ;;
  upgrade)
    need_docker; secrets
    say "a full backup before the upgrade"
    exec_in backup-agent backup-agent --config /etc/outrigger/backup-agent.toml backup postgres-full
    compose up -d --build --force-recreate "$@"
    wait_healthy
    exec_in health-agent health-agent --config /etc/outrigger/health-agent.toml check ;;
  health)
    need_docker; exec_in health-agent health-agent --config /etc/outrigger/health-agent.toml check ;;
  logs)
    need_docker; [ $# -ge 1 ] || die "usage: logs SERVICE"
    compose logs -f --tail=200 "$1" ;;
  pgbouncer)
    need_docker
    case ${1:-} in
      pools|stats) exec_in pool-exporter pool-exporter --config /etc/outrigger/pool-exporter.toml show "$1" ;;
      *) die "usage: pgbouncer pools|stats" ;;
    esac ;;
  redis)
    need_docker
    case ${1:-} in
      sentinel|replicas) exec_in sentinel-watch sentinel-watch --config /etc/outrigger/sentinel-watch.toml status ;;
      switchover)
        shift
        exec_in sentinel-watch sentinel-watch --config /etc/outrigger/sentinel-watch.toml switchover "$@" ;;
      *) die "usage: redis sentinel|replicas|switchover [--to HOST:PORT]" ;;
    esac ;;
  backup)
    need_docker
    case ${1:-} in
      postgres-full|postgres-incr|postgres-logical|redis)
        exec_in backup-agent backup-agent --config /etc/outrigger/backup-agent.toml backup "$1" ;;
      *) die "usage: backup postgres-full|postgres-incr|postgres-logical|redis" ;;
    esac ;;
  list)
    need_docker; exec_in backup-agent backup-agent --config /etc/outrigger/backup-agent.toml list ;;
  restore)
    need_docker
    case ${1:-} in
      postgres) shift; restore_postgres "$@" ;;
      redis) shift; restore_redis "$@" ;;
      *) die "usage: restore postgres [--time T | --lsn L | --backup ID] | restore redis [--backup ID]" ;;
    esac ;;
  verify)
    need_docker
    exec_in backup-agent backup-agent --config /etc/outrigger/backup-agent.toml verify "$@" ;;
  help|-h|--help) usage ;;
  *) usage >&2; exit 2 ;;
esac

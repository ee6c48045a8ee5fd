#!/usr/bin/env bash
# Outrigger's management script: every command maps onto docker compose and the daemons' own CLIs.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SECRETS="$HERE/secrets"

usage() {
  cat <<'TXT'
Usage: ./docker-manage.sh COMMAND

  start                       create secrets from compose/.env if missing, build, start everything
  stop                        stop everything (volumes are kept)
  health                      run every health check now (exit 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN)
  logs SERVICE                follow a service's logs (e.g. backup-agent, pgbouncer)
  pgbouncer pools|stats       PgBouncer's pools or per-database statistics
  redis sentinel|replicas     Sentinel's view of the master, or the replicas with their lag
  redis switchover [--to HOST:PORT]
                              planned change of master without losing acknowledged writes
  backup postgres-full|postgres-incr|postgres-logical|redis
                              run a backup now
  restore postgres|redis [ID] list backups (no ID) or restore one (ID) into /backups/restore/ID
  verify [ID]                 re-read backups from storage and check every checksum
  help                        this text
TXT
}

die() { printf 'docker-manage.sh: %s\n' "$*" >&2; exit 1; }

compose() {
  if docker compose version >/dev/null 2>&1; then
    docker compose -f "$HERE/docker-compose.yml" --env-file "$HERE/.env" "$@"
  elif command -v docker-compose >/dev/null 2>&1; then
    docker-compose -f "$HERE/docker-compose.yml" --env-file "$HERE/.env" "$@"
  else
    die "docker compose is not installed (https://docs.docker.com/compose/install/)"
  fi
}

need_docker() {
  command -v docker >/dev/null 2>&1 || die "docker is not installed"
  docker info >/dev/null 2>&1 || die "the Docker engine is not reachable (is it running, and may this user use it?)"
  [ -f "$HERE/.env" ] || die "no compose/.env: copy compose/.env.example to compose/.env and set the passwords"
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
  . "$HERE/.env"
  set +a
  local name var
  for name in postgres app replicator monitor pgb_admin pgb_stats redis grafana_admin; do
    var=$(printf '%s_PASSWORD' "$name" | tr '[:lower:]' '[:upper:]')
    [ -n "${!var:-}" ] || die "$var is not set in compose/.env"
    if [ ! -s "$SECRETS/${name}_password" ]; then
      printf '%s' "${!var}" > "$SECRETS/${name}_password"
      chmod 644 "$SECRETS/${name}_password"
    fi
  done
  {
    printf '"app" "%s"\n' "$APP_PASSWORD"
    printf '"pgb_admin" "%s"\n' "$PGB_ADMIN_PASSWORD"
    printf '"pgb_stats" "%s"\n' "$PGB_STATS_PASSWORD"
  } > "$SECRETS/userlist.txt"
  chmod 644 "$SECRETS/userlist.txt"
}

exec_in() { # exec_in SERVICE COMMAND...
  local svc=$1; shift
  compose exec -T "$svc" "$@"
}

cmd=${1:-help}
[ $# -gt 0 ] && shift
case $cmd in
  start)
    need_docker; secrets
    compose up -d --build
    compose ps ;;
  stop)
    need_docker; compose stop ;;
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
  restore)
    need_docker
    case ${1:-} in
      postgres|redis)
        what=$1
        if [ $# -lt 2 ]; then
          exec_in backup-agent backup-agent --config /etc/outrigger/backup-agent.toml list
        else
          exec_in backup-agent backup-agent --config /etc/outrigger/backup-agent.toml \
            restore "$what" --backup "$2" --target-dir "/backups/restore/$2"
        fi ;;
      *) die "usage: restore postgres|redis [ID]" ;;
    esac ;;
  verify)
    need_docker
    exec_in backup-agent backup-agent --config /etc/outrigger/backup-agent.toml verify "$@" ;;
  help|-h|--help) usage ;;
  *) usage >&2; exit 2 ;;
esac

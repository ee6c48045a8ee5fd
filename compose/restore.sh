#!/bin/sh
# Outrigger: the restore steps that run inside docker-manage.sh's one-off "restore" container (our
# image, as root, the backups and every data volume mounted under /restore).
#
#   outrigger-restore.sh postgres [--time T | --lsn L | --backup ID]
#       restores into a new directory in the PostgreSQL volume, replays and promotes it there
#       (backup-agent restore postgres --recover, as the postgres uid), and only then puts it in
#       place of the old data directory. A failed restore leaves the old data as it was.
#   outrigger-restore.sh redis NODE [--backup ID]
#       stages the snapshot in NODE's volume (.outrigger-restore/dump.rdb); redis-node.sh loads it
#       at the node's next start.
#
# Environment: POSTGRES_OWNER (default 999:999, the postgres image's uid), REDIS_OWNER (default
# 999:999, the redis image's uid).
set -eu
cfg=/etc/outrigger/backup-agent.toml
log() { printf 'restore: %s\n' "$*" >&2; }

case ${1:-} in
  postgres)
    shift
    vol=/restore/postgres
    new=$vol/.outrigger-restore
    old=$vol/.outrigger-replaced
    owner=${POSTGRES_OWNER:-999:999}
    rm -rf "$new" "$old"
    if ! backup-agent --config "$cfg" restore postgres --target-dir "$new" --owner "$owner" --recover "$@"; then
      rm -rf "$new"
      log "restore failed: the data directory was not touched"
      exit 1
    fi
    # Swap: the old data aside, the recovered directory's contents up, the old data removed.
    mkdir "$old"
    find "$vol" -mindepth 1 -maxdepth 1 ! -name .outrigger-restore ! -name .outrigger-replaced \
      -exec mv -t "$old" {} +
    find "$new" -mindepth 1 -maxdepth 1 -exec mv -t "$vol" {} +
    rmdir "$new"
    rm -rf "$old"
    chown "$owner" "$vol"
    chmod 700 "$vol"
    ;;
  redis)
    [ $# -ge 2 ] || { log "usage: outrigger-restore.sh redis NODE [--backup ID]"; exit 2; }
    node=$2
    shift 2
    vol=/restore/$node
    [ -d "$vol" ] || { log "no volume for Redis node $node"; exit 2; }
    staged=$vol/.outrigger-restore
    rm -rf "$staged"
    if ! backup-agent --config "$cfg" restore redis --target-dir "$staged" "$@"; then
      rm -rf "$staged"
      exit 1
    fi
    chown -R "${REDIS_OWNER:-999:999}" "$staged"
    log "snapshot staged for $node: it is loaded at the node's next start"
    ;;
  *)
    log "usage: outrigger-restore.sh postgres [OPTIONS] | redis NODE [--backup ID]"
    exit 2 ;;
esac

#!/usr/bin/env bash
# The official postgres image's entrypoint interface, written for the stand-in image: as root it
# gives PGDATA to postgres and re-runs itself as postgres; on an empty PGDATA it runs initdb with
# POSTGRES_USER / POSTGRES_PASSWORD (or their *_FILE), starts a socket-only temporary server with
# the container's arguments, runs /docker-entrypoint-initdb.d (*.sh executed when executable,
# else sourced; *.sql and *.sql.gz through psql), stops it; then runs the command.
set -Eeuo pipefail

# file_env VAR [DEFAULT]: VAR from VAR or from the file VAR_FILE names (not both).
file_env() {
  local var=$1 fvar="${1}_FILE" def=${2:-} val
  if [ -n "${!var:-}" ] && [ -n "${!fvar:-}" ]; then
    echo "error: both $var and $fvar are set (they are exclusive)" >&2
    exit 1
  fi
  val=$def
  if [ -n "${!var:-}" ]; then
    val=${!var}
  elif [ -n "${!fvar:-}" ]; then
    val=$(< "${!fvar}")
  fi
  export "$var"="$val"
  unset "$fvar"
}

# The temporary server for the init scripts: the container's arguments, socket only.
temp_server_start() {
  if [ "$1" = postgres ]; then shift; fi
  set -- "$@" -c listen_addresses='' -p 5432
  pg_ctl -D "$PGDATA" -o "$(printf '%q ' "$@")" -w start
}

if [ "${1:0:1}" = '-' ]; then set -- postgres "$@"; fi

if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA"
  chmod 00700 "$PGDATA"
  find "$PGDATA" \! -user postgres -exec chown postgres '{}' +
  mkdir -p /var/run/postgresql
  chown postgres /var/run/postgresql
  chmod 3777 /var/run/postgresql
  exec gosu postgres "${BASH_SOURCE[0]}" "$@"
fi

if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  file_env POSTGRES_PASSWORD
  file_env POSTGRES_USER postgres
  file_env POSTGRES_DB "$POSTGRES_USER"
  file_env POSTGRES_INITDB_ARGS
  auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
  if [ -z "$POSTGRES_PASSWORD" ] && [ "$auth" != trust ]; then
    echo "error: the database is uninitialized and no superuser password is given:" \
      "set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE (or POSTGRES_HOST_AUTH_METHOD=trust)" >&2
    exit 1
  fi
  # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of arguments
  initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") $POSTGRES_INITDB_ARGS
  printf '\nhost all all all %s\n' "$auth" >> "$PGDATA/pg_hba.conf"
  export PGPASSWORD="${PGPASSWORD:-$POSTGRES_PASSWORD}"
  temp_server_start "$@"
  psql=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
  if [ "$POSTGRES_DB" != postgres ]; then
    "${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case $f in
      *.sh)
        if [ -x "$f" ]; then
          echo "running $f"
          "$f"
        else
          echo "sourcing $f"
          # shellcheck disable=SC1090 # the init scripts are the operator's
          . "$f"
        fi ;;
      *.sql) echo "running $f"; "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f" ;;
      *.sql.gz) echo "running $f"; gunzip -c "$f" | "${psql[@]}" --dbname "$POSTGRES_DB" ;;
      *) if [ -e "$f" ]; then echo "ignoring $f"; fi ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop
  unset PGPASSWORD
  echo "PostgreSQL init process complete; ready for start up."
fi

exec "$@"

#!/bin/sh
# The part of edoburu/pgbouncer's entrypoint the shipped compose file uses: with a mounted
# /etc/pgbouncer/pgbouncer.ini the command runs as given. (The upstream image can also write the
# file from DATABASE_URL and friends; compose does not use that.)
set -e
[ -s /etc/pgbouncer/pgbouncer.ini ] || {
  echo "entrypoint: no /etc/pgbouncer/pgbouncer.ini (this stand-in does not write one from the environment)" >&2
  exit 1
}
echo "Starting $*..."
exec "$@"

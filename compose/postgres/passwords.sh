#!/bin/sh
# Sets the passwords of the roles init.sql created, from the docker secrets (never from the env).
# The statement goes through psql's stdin: psql interpolates variables (:'pw', quoted as a
# literal) there, not in -c.
set -eu
for role in app replicator monitor; do
  pw=$(cat "/run/secrets/${role}_password")
  printf "ALTER ROLE %s PASSWORD :'pw';\n" "$role" |
    psql -v ON_ERROR_STOP=1 -U postgres -d postgres -v pw="$pw"
done

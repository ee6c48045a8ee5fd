#!/bin/sh
# Sets the passwords of the roles init.sql created, from the docker secrets (never from the env).
set -eu
for role in app replicator monitor; do
  pw=$(cat "/run/secrets/${role}_password")
  psql -v ON_ERROR_STOP=1 -U postgres -d postgres -v pw="$pw" -c "ALTER ROLE $role PASSWORD :'pw'"
done

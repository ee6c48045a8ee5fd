#!/bin/sh
# The official redis image's entrypoint interface, written for the stand-in image: options or a
# *.conf first mean redis-server; redis-server started as root gives /data to redis and runs as
# redis with umask 0077; any other command runs as given.
set -e
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
  set -- redis-server "$@"
fi
if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
  find . \! -user redis -exec chown redis '{}' +
  exec gosu redis "$0" "$@"
fi
if [ "$(umask)" = 0022 ]; then umask 0077; fi
exec "$@"

#!/usr/bin/env bash
# Soak: six hours of the stack's life compressed into minutes. The ./dev stack with every
# backup-agent schedule at every minute (full, incremental, Redis, cleanup) and health checks
# every 15 s, under pgbench through PgBouncer, a Redis write load and a marker table written every
# second; the Redis master SIGKILLed at 40% of the run (then brought back by ./dev up, as a
# replica), PostgreSQL restarted (fast) at 60%. Every 10 s the daemons' RSS is sampled.
# At the end it prints: each daemon's RSS after warm-up (the first quarter), its peak and its last
# sample, and whether it grew beyond a bound (20% + 4 MiB over the warm-up figure); every job's
# outcomes in backup.log (a run that failed, and its retry); sentinel-watch's failover summary; and a point-in-time recovery to a
# moment a minute before the end, compared row for row with the source.
#
#   bench/soak.sh                 (root; SOAK_MINUTES, default 12; SOAK_SCALE, pgbench scale, default 10)
#
# A bench, not a test: it prints figures and exits 0 unless the stack cannot run. It refuses to
# touch a ./dev stack that is already running, and stops the one it started.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEV="$ROOT/.dev"
MINUTES=${SOAK_MINUTES:-12}
SCALE=${SOAK_SCALE:-10}
WORK=$(mktemp -d /tmp/outrigger-soak.XXXXXX)
chmod 755 "$WORK"
say() { printf '[soak %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
die() { say "FAILED: $*" >&2; exit 1; }

cd "$ROOT"
if ./dev status 2>/dev/null | grep -q ' running '; then
  die "a ./dev stack is running: stop it first (./dev down)"
fi

# Every schedule at every minute; health checks every 15 s.
export BACKUP_AGENT_SCHEDULE__FULL='* * * * *' BACKUP_AGENT_SCHEDULE__INCREMENTAL='* * * * *'
export BACKUP_AGENT_SCHEDULE__REDIS='* * * * *' BACKUP_AGENT_SCHEDULE__CLEANUP='* * * * *'
# A retry 15 s after a failure: within the minute, so that it runs before the next scheduled one.
export BACKUP_AGENT_SCHEDULE__RETRY='["15s"]'
export HEALTH_AGENT_INTERVAL=15s
say "starting the stack (./dev up)"
./dev up >"$WORK/up.log" 2>&1 || { tail -n 30 "$WORK/up.log"; die "./dev up"; }

# Only what this run writes: the logs may hold earlier runs.
LOGS="$DEV/backups/logs"
declare -A from_line
for f in backup.log sentinel-events.log; do
  from_line[$f]=1
  [ -f "$LOGS/$f" ] && from_line[$f]=$(($(wc -l <"$LOGS/$f") + 1))
done
fresh() { tail -n "+${from_line[$1]}" "$LOGS/$1"; }

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ./dev down >/dev/null 2>&1 || true
  say "stack stopped; work files in $WORK"
}
trap cleanup EXIT

eval "$(./dev env)"
PGRUN=$(cat "$DEV/pgrun")
BIN=$(printf "%s\n" /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
APP_PW=$(cat "$DEV/secrets/app_password")
REDIS_PW=$(cat "$DEV/secrets/redis_password")
as_pg() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }
app_psql() { PGPASSWORD=$APP_PW "$BIN/psql" -X -q -At -h 127.0.0.1 -p 16432 -U app -d app "$@"; }
master_port() { redis-cli -p 16389 SENTINEL get-master-addr-by-name mymaster 2>/dev/null | sed -n 2p; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
daemon_pid() { head -n 1 "$DEV/run/$1.pid"; }

say "pgbench -i -s $SCALE, the marker table"
PGPASSWORD=$APP_PW "$BIN/pgbench" -q -i -s "$SCALE" -h 127.0.0.1 -p 16432 -U app app >"$WORK/pgbench-init.log" 2>&1 \
  || { tail -n 20 "$WORK/pgbench-init.log"; die "pgbench -i"; }
app_psql -c "DROP TABLE IF EXISTS soak_marks" -c "CREATE TABLE soak_marks (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())"

secs=$((MINUTES * 60))
say "load for $MINUTES minutes: pgbench -c 2, Redis writes, a marker a second"
# The PostgreSQL restart ends pgbench's sessions (a FATAL aborts its clients): it is started
# again for the time left, so that the load lasts the whole run. Each run's summary is kept.
load_end=$((SECONDS + secs))
(
  while [ $((left = load_end - SECONDS)) -gt 5 ]; do
    PGPASSWORD=$APP_PW "$BIN/pgbench" -n -c 2 -j 1 -R 50 -T "$left" -h 127.0.0.1 -p 16432 -U app app \
      >>"$WORK/pgbench.log" 2>&1 || sleep 1
  done
) &
pids+=($!)
(
  i=0
  while :; do
    port=$(master_port || true)
    if [ -n "$port" ]; then
      for ((k = 0; k < 200; k++)); do printf 'SET soak:%d %s\n' "$((i * 200 + k))" "value-$i-$k"; done \
        | redis-cli --no-auth-warning -a "$REDIS_PW" -p "$port" >/dev/null 2>&1 || true
    fi
    i=$((i + 1))
    sleep 1
  done
) &
pids+=($!)
( while :; do app_psql -c "INSERT INTO soak_marks DEFAULT VALUES" >/dev/null 2>&1 || true; sleep 1; done ) &
pids+=($!)

declare -A first_pid
for d in backup-agent health-agent sentinel-watch pool-exporter; do first_pid[$d]=$(daemon_pid "$d"); done
echo "t_s backup-agent health-agent sentinel-watch pool-exporter" >"$WORK/rss.txt"
start=$(date +%s)
killed=0 restarted=0
while :; do
  now=$(date +%s) t=$((now - start))
  [ "$t" -lt "$secs" ] || break
  line="$t"
  for d in backup-agent health-agent sentinel-watch pool-exporter; do line+=" $(rss_kib "${first_pid[$d]}")"; done
  echo "$line" >>"$WORK/rss.txt"
  if [ "$killed" = 0 ] && [ "$t" -ge $((secs * 40 / 100)) ]; then
    killed=1
    old=$(master_port)
    victim=$(ss -Hltnp "sport = :$old" | grep -o 'pid=[0-9]*' | head -n 1 | cut -d= -f2)
    say "SIGKILL of the Redis master (port $old, pid $victim)"
    kill -KILL "$victim"
    for ((w = 0; w < 60; w++)); do
      [ "$(master_port)" != "$old" ] && break
      sleep 1
    done
    say "Sentinels promoted port $(master_port); ./dev up brings the old master back"
    ./dev up >>"$WORK/up.log" 2>&1 || say "./dev up after the failover failed (see $WORK/up.log)"
  fi
  if [ "$restarted" = 0 ] && [ "$t" -ge $((secs * 60 / 100)) ]; then
    restarted=1
    say "PostgreSQL restart (fast)"
    as_pg "$BIN/pg_ctl" -D "$PGRUN/postgres/data" -m fast -w restart >>"$WORK/pg-restart.log" 2>&1 \
      || say "pg_ctl restart failed (see $WORK/pg-restart.log)"
  fi
  sleep 10
done
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
wait "${pids[@]}" 2>/dev/null || true
pids=()
say "load stopped"

say "== RSS (KiB): after warm-up (first quarter), peak, last; bound: warm-up + 20% + 4 MiB"
for col in 2 3 4 5; do
  name=$(head -n 1 "$WORK/rss.txt" | cut -d' ' -f"$col")
  awk -v c="$col" -v n="$name" -v q=$((secs / 4)) '
    NR > 1 { if ($1 <= q) warm = $c; if ($c > peak) peak = $c; last = $c }
    END {
      bound = warm * 1.2 + 4096
      printf "  %-15s warm-up %7d  peak %7d  last %7d  bound %7d  %s\n", n, warm, peak, last, bound,
        (last <= bound ? "stable" : "GREW")
    }' "$WORK/rss.txt"
done
for d in backup-agent health-agent sentinel-watch pool-exporter; do
  [ "$(daemon_pid "$d")" = "${first_pid[$d]}" ] || say "  $d restarted during the run (pid ${first_pid[$d]} -> $(daemon_pid "$d"))"
done

say "== backup.log: job outcomes"
fresh backup.log | grep -o 'event=job_end job=[a-z-]* outcome=[a-z]*' \
  | sed 's/event=job_end //' | sort | uniq -c | sed 's/^/  /'
fresh backup.log | grep 'event=job_end' | grep -v 'outcome=ok' | sed 's/^/  not ok: /' | cut -c1-300 | head -n 10 || true
fresh backup.log | grep -E 'event=job_(retry|retries_exhausted)' | sed 's/^/  /' || true

say "== sentinel-watch"
fresh sentinel-events.log | grep -E 'event=(failover_summary|master_restarted|failover_aborted)' \
  | sed 's/^/  /' | cut -c1-400 || true
say "== pgbench"
grep -E 'number of transactions actually processed|number of failed|aborted|tps' "$WORK/pgbench.log" | sed 's/^/  /' || true

say "== point-in-time recovery to a minute before the end"
# A moment half-way between two markers about a minute before the last one: no commit is near it.
target=$(app_psql -c "SELECT to_char((at + (lead(at) OVER (ORDER BY id) - at) / 2) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM soak_marks ORDER BY id" \
  | sed -n "$(($(app_psql -c 'SELECT count(*) FROM soak_marks') - 60))p")
want=$(app_psql -c "SELECT count(*) FROM soak_marks WHERE at <= '$target'")
as_pg "$BIN/psql" -X -q -h "$PGRUN/postgres" -p 15432 -U postgres -c "SELECT pg_switch_wal()" >/dev/null
sleep 10
mkdir -p "$WORK/restored"
t0=$(date +%s)
target/debug/backup-agent -c compose/config/backup-agent.toml restore postgres --target-dir "$WORK/restored/data" \
  --owner postgres --recover --time "$target" >"$WORK/restore.log" 2>&1 || { tail -n 20 "$WORK/restore.log"; die "restore"; }
t1=$(date +%s)
sed 's/^/  /' "$WORK/restore.log" | tail -n 2
mkdir -p "$WORK/restored/sock" && chown postgres: "$WORK/restored/sock"
as_pg "$BIN/pg_ctl" -D "$WORK/restored/data" -l "$WORK/restored/sock/pg.log" -w \
  -o "-c listen_addresses= -c port=15999 -c unix_socket_directories=$WORK/restored/sock -c archive_mode=off" start >/dev/null
got=$(as_pg "$BIN/psql" -X -At -h "$WORK/restored/sock" -p 15999 -U postgres -d app -c "SELECT count(*) FROM soak_marks")
over=$(as_pg "$BIN/psql" -X -At -h "$WORK/restored/sock" -p 15999 -U postgres -d app -c "SELECT count(*) FROM soak_marks WHERE at > '$target'")
as_pg "$BIN/pg_ctl" -D "$WORK/restored/data" -m fast -w stop >/dev/null
if [ "$got" = "$want" ] && [ "$over" = 0 ]; then verdict=exact; else verdict=WRONG; fi
say "  target $target: source has $want markers up to it, the restore $got (and $over after it): $verdict; restore took $((t1 - t0)) s"

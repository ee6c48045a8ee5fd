-- Outrigger: roles the daemons use. Run once at cluster creation (docker-entrypoint-initdb.d in
-- compose, ./dev up locally). Passwords are set afterwards from secrets, never stored here.
CREATE ROLE app LOGIN;
CREATE DATABASE app OWNER app;
-- backup-agent: base backups and WAL streaming.
CREATE ROLE replicator LOGIN REPLICATION;
-- health-agent: connection counts, replication lag and slots.
CREATE ROLE monitor LOGIN IN ROLE pg_monitor;
-- backup-agent's incremental switches WAL and creates restore points.
GRANT EXECUTE ON FUNCTION pg_switch_wal() TO replicator;
GRANT EXECUTE ON FUNCTION pg_create_restore_point(text) TO replicator;

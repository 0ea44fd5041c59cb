#!/bin/bash
# The change feed under a bulk write and under one-device changes, on both
# backends: a fresh SQLite registry file and a throwaway PostgreSQL cluster
# (unix socket in a temp dir only, no TCP; fsync and synchronous_commit off,
# and SQLite at synchronous = NORMAL, so that the figures are the cost of
# the statements and their triggers, not of the disk).
#
#   tests/bench/feed_bulk.sh [SCHEMA_DIR]   # default: schema/ of this tree
#
# SCHEMA_DIR holds schema.sql and postgresql.sql (another version's, to
# compare). ROWS (default 100000) devices are inserted in one statement (one
# transaction); then CHANGES (default 5000) single-device updates run, each
# its own transaction. Prints the feed rows the bulk left, and for each
# step the wall time and the CPU time of the process that ran the SQL (the
# sqlite3 shell, with its start; the PostgreSQL backend, from /proc), which
# other load on the machine disturbs less.
set -euo pipefail

schema_dir=${1:-$(dirname "$0")/../../schema}
rows=${ROWS:-100000}
changes=${CHANGES:-5000}
bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
tick_ms=$((1000 / $(getconf CLK_TCK)))
tmp=$(mktemp -d)
chmod 755 "$tmp"
mkdir "$tmp/pg" "$tmp/socket"
if [[ $(id -u) -eq 0 ]]; then chown postgres "$tmp/pg" "$tmp/socket"; fi
as_pg() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}
started=0
cleanup() {
  if [[ $started -eq 1 ]]; then
    as_pg "$bindir/pg_ctl" -D "$tmp/pg" -m fast -w stop > /dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

now_ms() { echo $(($(date +%s%N) / 1000000)); }
# The user + system CPU time of process $1 so far, in ms.
cpu_ms() { awk -v t="$tick_ms" '{ print ($14 + $15) * t }' "/proc/$1/stat"; }
# The device ids the updates change, spread over the bulk.
ids() { for i in $(seq "$changes"); do echo "bulk-$(((i * 7919) % rows + 1))"; done; }

# --- SQLite --------------------------------------------------------------
db="$tmp/registry.db"
sqlite3 "$db" < "$schema_dir/schema.sql" > /dev/null
# The sqlite3 shell's CPU time (user + system) for the SQL on stdin, in ms.
sqlite_run() {
  /usr/bin/time -f "%U %S" -o "$tmp/time" sqlite3 "$db" > /dev/null
  awk '{ printf "%d\n", ($1 + $2) * 1000 }' "$tmp/time"
}
start=$(now_ms)
cpu=$(sqlite_run <<SQL
PRAGMA synchronous = NORMAL;
WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $rows)
INSERT INTO devices (device_id) SELECT 'bulk-' || i FROM n;
SQL
)
echo "SQLite:     $rows devices in one transaction: wall $(($(now_ms) - start)) ms, CPU $cpu ms; $(sqlite3 "$db" "SELECT count(*) FROM registry_changes") feed rows after it"
start=$(now_ms)
cpu=$({ echo "PRAGMA synchronous = NORMAL;"
        ids | sed "s/.*/UPDATE devices SET enabled = 1 - enabled WHERE device_id = '&';/"
      } | sqlite_run)
echo "SQLite:     one-device update (mean of $changes): wall $((($(now_ms) - start) * 1000 / changes)) us, CPU $((cpu * 1000 / changes)) us"

# --- PostgreSQL ----------------------------------------------------------
as_pg "$bindir/initdb" -D "$tmp/pg" -U postgres -A trust -E UTF8 \
  --locale=C > /dev/null
started=1
as_pg "$bindir/pg_ctl" -D "$tmp/pg" -l "$tmp/pg/log" -w -o \
  "-k $tmp/socket -c listen_addresses='' -c fsync=off -c synchronous_commit=off" \
  start > /dev/null
psql=(psql -X -q -At -v ON_ERROR_STOP=1 -h "$tmp/socket" -U postgres)
"${psql[@]}" -d postgres -c "CREATE DATABASE registry"
"${psql[@]}" -d registry -f "$schema_dir/postgresql.sql" > /dev/null
# The backend's CPU time (from its /proc stat, read by the server itself)
# and the wall time taken by the SQL on stdin, as "cpu_ms wall_ms".
pg_run() {
  local probe="SELECT (split_part(s, ' ', 14)::bigint + split_part(s, ' ', 15)::bigint) * $tick_ms || ' ' || (extract(epoch FROM clock_timestamp()) * 1000)::bigint FROM pg_read_file('/proc/' || pg_backend_pid() || '/stat') AS s;"
  { echo "$probe"; cat; echo "$probe"; } | "${psql[@]}" -d registry |
    awk 'NR == 1 { c = $1; w = $2 } END { print $1 - c, $2 - w }'
}
read -r cpu wall < <(pg_run <<SQL
INSERT INTO devices (device_id)
  SELECT 'bulk-' || g FROM generate_series(1, $rows) AS g;
SQL
)
echo "PostgreSQL: $rows devices in one transaction: wall $wall ms, backend CPU $cpu ms; $("${psql[@]}" -d registry -c "SELECT count(*) FROM registry_changes") feed rows after it"
# The updates once unmeasured, then statistics as autovacuum would keep
# them (the feed holds rows again: a plan made while it was empty, as after
# a bulk write past the bound on a new registry, would scan it whole until
# autovacuum's next ANALYZE), then measured.
ids | sed "s/.*/UPDATE devices SET enabled = 1 - enabled WHERE device_id = '&';/" \
  > "$tmp/updates.sql"
"${psql[@]}" -d registry -f "$tmp/updates.sql"
"${psql[@]}" -d registry -c "VACUUM ANALYZE"
read -r cpu wall < <(pg_run < "$tmp/updates.sql")
echo "PostgreSQL: one-device update (mean of $changes): wall $((wall * 1000 / changes)) us, backend CPU $((cpu * 1000 / changes)) us"

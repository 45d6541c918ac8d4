#!/usr/bin/env bash
# booking_pg.sh -- the booking flow (bench/lua/booking.lua: enter the line,
# poll, sessions -> seats -> hold -> pay) against concertd on SQLite
# (embedded mode, the reference) and concertd on PostgreSQL, one after the
# other in the same run, with the same seed and the same load. Prints both
# and the ratio PostgreSQL / SQLite (issue 7: distributed mode >= 0.5 x
# embedded on the booking flow).
#
#   bench/booking_pg.sh
#   BENCH_DURATION=5s BENCH_USERS=100 bench/booking_pg.sh
#
# Environment (defaults in brackets), besides those of bench/lib.sh:
#   BENCH_USERS      users = wrk connections                       [300]
#   BENCH_CONCERTS / BENCH_SESSIONS / BENCH_SEATS   seed shape      [20 / 10 / 1000]
#   BENCH_STRICT=1   exit 2 when a target FAILs                     [report only]
#
# PostgreSQL is a throwaway cluster: initdb into the scratch dir, started on
# a free loopback port with fsync on (as the postgres user when run as
# root), stopped with pg_ctl and deleted on exit. One concertd instance and
# the waiting room in memory (--queue local) in both runs: this measures the
# store. Only processes this script starts are stopped, by PID, on exit.
set -euo pipefail

BENCH_NAME=booking_pg
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

USERS=${BENCH_USERS:-300}
CONCERTS=${BENCH_CONCERTS:-20}
SESSIONS=${BENCH_SESSIONS:-10}
SEATS=${BENCH_SEATS:-1000}
LUA=$ROOT/bench/lua/booking.lua
[ $((USERS % THREADS)) -eq 0 ] || die "BENCH_USERS must be a multiple of BENCH_THREADS"

# ---- a throwaway PostgreSQL cluster -------------------------------------------
PGBIN=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -1)
[ -x "$PGBIN/initdb" ] || die "PostgreSQL server binaries not found (scripts/deps installs them)"
PGDIR=$WORK/pg
mkdir -p "$PGDIR"
AS=()
if [ "$(id -u)" -eq 0 ]; then # PostgreSQL refuses to run as root
  chown postgres: "$PGDIR"
  AS=(runuser -u postgres --)
fi
PGPORT=$(free_port)
pg_stop() { "${AS[@]}" "$PGBIN/pg_ctl" -D "$PGDIR/data" -m fast -w stop >/dev/null 2>&1 || true; }
trap 'pg_stop; cleanup' EXIT
say "initdb + start PostgreSQL on 127.0.0.1:$PGPORT ..."
"${AS[@]}" "$PGBIN/initdb" -D "$PGDIR/data" -U postgres --auth=trust -E UTF8 --no-locale \
  >"$WORK/initdb.out" 2>&1 || die "initdb failed: $(tail -5 "$WORK/initdb.out")"
"${AS[@]}" "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/server.log" -w -t 60 \
  -o "-p $PGPORT -k $PGDIR -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=200 -c shared_buffers=256MB" \
  start >/dev/null || die "PostgreSQL did not start: $(tail -5 "$PGDIR/server.log")"
PSQL=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PGPORT" -U postgres)
"${PSQL[@]}" -d postgres -c "CREATE DATABASE booking" || die "createdb failed"
PGURL="postgres://postgres@127.0.0.1:$PGPORT/booking"
SQLITE_DB=$WORK/booking.db

# ---- the same seed in both -----------------------------------------------------
seed() { # db-url -> seconds it took
  local t0=$SECONDS
  "$BIN" seed --db "$1" --concerts "$CONCERTS" --sessions-per-concert "$SESSIONS" \
    --seats-per-session "$SEATS" --users "$((USERS + 1 + THREADS))" --balance 1000000000000 \
    --active-tokens 'queue_token_{n}' >/dev/null || die "seed of $1 failed"
  echo $((SECONDS - t0))
}
say "seeding $((CONCERTS * SESSIONS * SEATS)) seats, $USERS users, twice ..."
SEED_SQ=$(seed "sqlite:$SQLITE_DB")
SEED_PG=$(seed "$PGURL")
# The Lua script derives a seat's concert and session from its id (seed order).
ORDER_BAD=$("${PSQL[@]}" -d booking -tA -c "SELECT count(*) FROM seats s JOIN sessions ss
  ON ss.id = s.session_id WHERE ss.id <> (s.id - 1) / $SEATS + 1
  OR ss.concert_id <> (ss.id - 1) / $SESSIONS + 1 OR s.seat_number <> (s.id - 1) % $SEATS + 1")
[ "$ORDER_BAD" = 0 ] || die "PostgreSQL seat ids do not follow the seed order ($ORDER_BAD off)"

# ---- the runs --------------------------------------------------------------------
ARGS=("$THREADS" "$SEATS" "$SESSIONS" "$USERS")
HALF=$((CONCERTS * SESSIONS * SEATS / 2))
run() { # name db
  start_concertd "$2" --queue-max-active 10000000 --queue-admit-per-sec 1000000 --queue-tick 10ms
  wrk_warm "$C" "$LUA" "$USERS" concertd "${ARGS[@]}" 0
  sleep 1 # let the warm-up's last payments land (see booking.sh)
  wrk_measure "$1" "$C" "$LUA" "$USERS" concertd "${ARGS[@]}" "$HALF"
  kill -TERM "$CPID"
  wait "$CPID" || die "concertd on $1 exited with an error: $(tail -20 "$WORK/concertd.err")"
  CPID=
}
run sqlite "$SQLITE_DB"
run pg "$PGURL"

S_FLOW=$(grep '^FLOW' "$WORK/sqlite.wrk" | tail -1)
P_FLOW=$(grep '^FLOW' "$WORK/pg.wrk" | tail -1)

# Invariants 1, 2 and 4 in the PostgreSQL database after the runs.
read -r DOUBLE PAID_TWICE LEDGER_BAD SOLD < <(booking_invariants "${PSQL[@]}" -d booking)

# shellcheck disable=SC2317  # called by save_report
report() {
  echo "booking_pg: $USERS users (wrk -t$THREADS -c$USERS -d$DURATION), enter/poll + sessions -> seats -> hold -> pay,"
  echo "$((CONCERTS * SESSIONS * SEATS)) seats stored, $(nproc) cores, $(date -u +%FT%TZ)"
  echo "$("$BIN" --version 2>&1 | head -1), $("$PGBIN/postgres" --version)"
  echo "seed: SQLite ${SEED_SQ}s, PostgreSQL ${SEED_PG}s"
  echo
  echo "SQLite:     $S_FLOW"
  echo "PostgreSQL: $P_FLOW; in the database: $SOLD seats sold"
  echo
  booking_compare "concertd on SQLite" "$WORK/sqlite.wrk" "concertd on PostgreSQL" "$WORK/pg.wrk" \
    PostgreSQL/SQLite
}
save_report report "$WORK/sqlite.wrk" "$WORK/pg.wrk"
bench_exit
exit 0

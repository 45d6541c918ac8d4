#!/usr/bin/env bash
# distributed.sh -- the booking flow (bench/lua/booking.lua: enter the line,
# poll, sessions -> seats -> hold -> pay) against embedded concertd (SQLite,
# local waiting room: the reference) and against distributed mode as
# deployed (scripts/cluster: PostgreSQL, Redis, two concertd behind
# HAProxy), one after the other in the same run, with the same seed and the
# same load. Prints both and the ratio distributed / embedded (issue 7:
# >= 0.5 on this machine).
#
#   bench/distributed.sh
#   BENCH_DURATION=5s BENCH_USERS=100 bench/distributed.sh
#
# Environment (defaults in brackets), besides those of bench/lib.sh:
#   BENCH_USERS      users = wrk connections                       [300]
#   BENCH_CONCERTS / BENCH_SESSIONS / BENCH_SEATS   seed shape      [20 / 10 / 1000]
#   BENCH_STRICT=1   exit 2 when a target FAILs                     [report only]
#
# Everything runs on this machine's cores: wrk, HAProxy, both instances,
# PostgreSQL and Redis share them in the distributed run, as concertd and
# wrk do in the embedded one. Only processes this script (or scripts/cluster
# for it) started are stopped, by PID, on exit.
set -euo pipefail

BENCH_NAME=distributed
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

USERS=${BENCH_USERS:-300}
CONCERTS=${BENCH_CONCERTS:-20}
SESSIONS=${BENCH_SESSIONS:-10}
SEATS=${BENCH_SEATS:-1000}
LUA=$ROOT/bench/lua/booking.lua
[ $((USERS % THREADS)) -eq 0 ] || die "BENCH_USERS must be a multiple of BENCH_THREADS"
QUEUE_ARGS="--queue-max-active 10000000 --queue-admit-per-sec 1000000 --queue-tick 10ms"
SEED_ARGS="--concerts $CONCERTS --sessions-per-concert $SESSIONS --seats-per-session $SEATS
  --users $((USERS + 1 + THREADS)) --balance 1000000000000 --active-tokens queue_token_{n}"

CL=$WORK/cluster
trap '[ ! -f "$CL/env" ] || "$ROOT/scripts/cluster" stop "$CL" >/dev/null 2>&1; cleanup' EXIT

ARGS=("$THREADS" "$SEATS" "$SESSIONS" "$USERS")
HALF=$((CONCERTS * SESSIONS * SEATS / 2))
measure() { # name base-url
  wrk_warm "$2" "$LUA" "$USERS" concertd "${ARGS[@]}" 0
  sleep 1 # let the warm-up's last payments land (see booking.sh)
  wrk_measure "$1" "$2" "$LUA" "$USERS" concertd "${ARGS[@]}" "$HALF"
}

# ---- embedded: the reference ---------------------------------------------------
say "embedded: seeding $((CONCERTS * SESSIONS * SEATS)) seats into SQLite ..."
# shellcheck disable=SC2086  # lists of arguments
"$BIN" seed --db "sqlite:$WORK/booking.db" $SEED_ARGS >/dev/null || die "seed failed"
# shellcheck disable=SC2086
start_concertd "$WORK/booking.db" $QUEUE_ARGS
measure embedded "$C"
kill -TERM "$CPID"
wait "$CPID" || die "embedded concertd exited with an error: $(tail -20 "$WORK/concertd.err")"
CPID=

# ---- distributed: scripts/cluster ----------------------------------------------
say "distributed: PostgreSQL, Redis, two concertd and HAProxy (scripts/cluster) ..."
CONCERTD_BIN=$BIN CLUSTER_SEED="$SEED_ARGS" \
  CLUSTER_SERVE_ARGS="$QUEUE_ARGS $BENCH_LIMITS --log-level warn ${BENCH_SERVE_ARGS:-}" \
  "$ROOT/scripts/cluster" start "$CL" >"$WORK/cluster.out" 2>&1 \
  || die "scripts/cluster failed: $(tail -5 "$WORK/cluster.out")"
URL=$(sed -n 's/^URL=//p' "$CL/env")
PGURL=$(sed -n 's/^PG_URL=//p' "$CL/env")
measure distributed "$URL"
for i in 1 2; do
  pid=$(sed -n "s/^CONCERTD_PID_$i=//p" "$CL/env")
  kill -0 "$pid" 2>/dev/null || die "instance $i died: $(tail -20 "$CL/concertd-$i.log")"
done

E_FLOW=$(grep '^FLOW' "$WORK/embedded.wrk" | tail -1)
D_FLOW=$(grep '^FLOW' "$WORK/distributed.wrk" | tail -1)

# Invariants 1, 2 and 4 in the cluster's PostgreSQL after the run.
PSQL=(psql -X -q -v ON_ERROR_STOP=1 "$PGURL")
read -r DOUBLE PAID_TWICE LEDGER_BAD SOLD < <(booking_invariants "${PSQL[@]}")

# shellcheck disable=SC2317  # called by save_report
report() {
  echo "distributed: $USERS users (wrk -t$THREADS -c$USERS -d$DURATION), enter/poll + sessions -> seats -> hold -> pay,"
  echo "$((CONCERTS * SESSIONS * SEATS)) seats stored, $(nproc) cores, $(date -u +%FT%TZ)"
  echo "$("$BIN" --version 2>&1 | head -1), $(haproxy -v 2>&1 | head -1 | cut -d' ' -f1-3), $(redis-server --version | cut -d' ' -f1-3)"
  echo
  echo "embedded:    $E_FLOW"
  echo "distributed: $D_FLOW; in PostgreSQL: $SOLD seats sold"
  echo
  booking_compare "embedded (SQLite, local queue)" "$WORK/embedded.wrk" \
    "HAProxy + 2 concertd (PG, Redis)" "$WORK/distributed.wrk" distributed/embedded
}
save_report report "$WORK/embedded.wrk" "$WORK/distributed.wrk"
bench_exit
exit 0

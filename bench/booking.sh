#!/usr/bin/env bash
# booking.sh -- the booking flow of 300 users (sessions -> seats -> hold ->
# pay), against nginx answering the very same bytes in the same run
# (DESIGN.md 6: "booking flow, 300 users: p95 < 5 ms, 0 double bookings").
#
#   bench/booking.sh
#   BENCH_DURATION=5s BENCH_USERS=100 bench/booking.sh
#
# Environment (defaults in brackets), besides those of bench/lib.sh
# (CONCERTD_BIN, BENCH_DURATION [8s], BENCH_WARMUP [2s], BENCH_THREADS [2],
# BENCH_SERVE_ARGS, BENCH_KEEP):
#   BENCH_USERS      users = wrk connections                       [300]
#   BENCH_CONCERTS / BENCH_SESSIONS / BENCH_SEATS   seed shape      [20 / 10 / 1000]
#   BENCH_STRICT=1   exit 2 when a target FAILs                     [report only]
#
# Afterwards the database is checked: no seat in two live holds or sold
# twice, one payment per confirmed reservation, balances equal to their
# ledgers. Only processes this script starts are stopped, by PID, on exit.
set -euo pipefail

BENCH_NAME=booking
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

USERS=${BENCH_USERS:-300}
FLOW_PERIOD=${BENCH_FLOW_PERIOD:-1000}
FLOW_SECS=${BENCH_FLOW_SECS:-10}
CONCERTS=${BENCH_CONCERTS:-20}
SESSIONS=${BENCH_SESSIONS:-10}
SEATS=${BENCH_SEATS:-1000}
LUA=$ROOT/bench/lua/booking.lua
[ $((USERS % THREADS)) -eq 0 ] || die "BENCH_USERS must be a multiple of BENCH_THREADS"

DB=$WORK/booking.db
say "seeding $((CONCERTS * SESSIONS * SEATS)) seats, $USERS users ..."
"$BIN" seed --db "sqlite:$DB" --concerts "$CONCERTS" --sessions-per-concert "$SESSIONS" \
  --seats-per-session "$SEATS" --users "$((USERS + 1 + THREADS))" --balance 1000000000000 \
  --active-tokens 'queue_token_{n}' >/dev/null \
  || die "seed failed"
# The Lua script derives a seat's concert and session from its id (seed order).
"$PY" - "$DB" "$SEATS" "$SESSIONS" <<'PYEOF' || die "seat ids do not follow the seed order"
import sqlite3, sys
db, per_session, per_concert = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
bad = sqlite3.connect(db).execute(
    "SELECT count(*) FROM seats s JOIN sessions ss ON ss.id = s.session_id"
    " WHERE ss.id <> (s.id - 1) / ? + 1 OR ss.concert_id <> (ss.id - 1) / ? + 1"
    " OR s.seat_number <> (s.id - 1) % ? + 1", (per_session, per_concert, per_session)).fetchone()[0]
sys.exit(1 if bad else 0)
PYEOF

# Paying expires the payer's token and the flow enters the line again: let
# the line admit at once, so the flow measures booking, not the queue.
start_concertd "$DB" --queue-max-active 10000000 --queue-admit-per-sec 1000000 --queue-tick 10ms

# One sample of each answer, for nginx to repeat byte for byte, made as a
# user the load does not use (paying expires that user's token). Users
# USERS+2.. are the Lua script's browsers (one per wrk thread).
SAMPLER=$((USERS + 1))
mkdir -p "$WORK/www"
sample() { # name method path [body] ; fails unless 2xx
  local code
  code=$(curl -sS --max-time 10 -o "$WORK/www/$1" -w '%{http_code}' -X "$2" \
    -H 'Content-Type: application/json' -H "QUEUE-TOKEN: queue_token_$SAMPLER" \
    ${4:+--data "$4"} "$C$3") || die "$2 $3 failed"
  case $code in 2*) ;; *) die "$2 $3 -> $code: $(head -c 300 "$WORK/www/$1")" ;; esac
}
LAST=$((CONCERTS * SESSIONS * SEATS)) # sample with the very last seat: the load never reaches it
LSID=$(((LAST - 1) / SEATS + 1))
LCID=$(((LSID - 1) / SESSIONS + 1))
sample sessions GET "/api/v1/concerts/$LCID/sessions"
sample seats GET "/api/v1/concerts/$LCID/sessions/$LSID/seats?limit=20&after=$((SEATS - 20))"
sample hold POST "/api/v1/concerts/$LCID/sessions/$LSID/reservations" "{\"userId\":$SAMPLER,\"seatIds\":[$LAST]}"
RID=$(grep -o '"reservationId":[0-9]*' "$WORK/www/hold" | cut -d: -f2)
sample pay POST /api/v1/payments "{\"userId\":$SAMPLER,\"reservationId\":$RID}"
sample enter POST /api/v1/waiting-queues "{\"userId\":$SAMPLER}"
STOK=$(grep -o '"token":"[^"]*"' "$WORK/www/enter" | cut -d'"' -f4)
code=$(curl -sS -o "$WORK/www/poll" -w '%{http_code}' -H "QUEUE-TOKEN: $STOK" "$C/api/v1/waiting-queues")
[ "$code" = 200 ] || die "poll -> $code"
sample stats GET /api/v1/waiting-queues/stats

start_nginx "$(nginx_return /sessions 200 "$WORK/www/sessions")
$(nginx_return /seats 200 "$WORK/www/seats")
$(nginx_return /hold 201 "$WORK/www/hold")
$(nginx_return /pay 201 "$WORK/www/pay")
$(nginx_return /enter 201 "$WORK/www/enter")
$(nginx_return /poll 200 "$WORK/www/poll")
$(nginx_return /stats 200 "$WORK/www/stats")"
wait_http "$N/sessions" 10 || die "nginx did not start: $(tail -20 "$WORK/nginx/error.log")"
cmp -s <(curl -s "$N/seats") "$WORK/www/seats" || die "nginx does not serve the seat page bytes"

# Seats: the warm-up holds from seat 1 up, the measured run from the middle up.
ARGS=("$THREADS" "$SEATS" "$SESSIONS" "$USERS")
HALF=$((LAST / 2))
wrk_run nginx "$N" "$LUA" "$USERS" nginx "${ARGS[@]}" 0
wrk_warm "$C" "$LUA" "$USERS" concertd "${ARGS[@]}" 0
# Payments the warm-up sent just before it stopped may commit after it
# exits and expire tokens the measured run has just been handed: let them
# land first.
sleep 1
wrk_measure concertd "$C" "$LUA" "$USERS" concertd "${ARGS[@]}" "$HALF"

# Paced: 300 users, each starting the whole flow once a period (think time,
# as real fans): enter the line, wait for ACTIVATED, concerts, sessions,
# seats, hold 1-2 seats at random among those still available, pay.
# concert-load's constant arrival rate, users in turn, latency counted from
# when each request was due (a user waiting for a connection counts).
[ -x "$LOAD" ] || die "no concert-load at $LOAD"
say "paced flow: $USERS users, one flow each every ${FLOW_PERIOD} ms, ${FLOW_SECS}s ..."
"$LOAD" --target "$C" --scenario full-flow --vus "$USERS" --connections "$USERS" --poll 10ms \
  --rate "$((USERS * 1000 / FLOW_PERIOD))/s" --duration "${FLOW_SECS}s" \
  --json "$WORK/paced.json" >"$WORK/paced.out" 2>&1 || die "paced flow failed: $(cat "$WORK/paced.out")"
PACED=$(load_kv "$WORK/paced.json")
pkv() { sed -n "s/.*[ ^]$1=\([^ ]*\).*/\1/p" <<<" $PACED"; }

read -r N_RPS N_P50 N_P95 N_P99 N_ERR < <(wrk_parse "$WORK/nginx.wrk")
read -r C_RPS C_P50 C_P95 C_P99 C_ERR < <(wrk_parse "$WORK/concertd.wrk")
FLOW=$(grep '^FLOW' "$WORK/concertd.wrk" | tail -1)
HELD=$(echo "$FLOW" | sed -n 's/.*holds=\([0-9]*\).*/\1/p')
[ "$HELD" -lt $((HALF - 10000)) ] || die "the measured run used up its seats; seed more (BENCH_SEATS)"

# Invariants 1, 2 and 4 in the database, after the run.
DBCHECK=$("$PY" - "$DB" <<'PYEOF'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
q = lambda sql: c.execute(sql).fetchone()[0]
double = q("SELECT count(*) FROM (SELECT rs.seat_id FROM reservation_seats rs JOIN reservations r"
           " ON r.id = rs.reservation_id WHERE r.status IN ('HELD', 'CONFIRMED')"
           " GROUP BY rs.seat_id HAVING count(*) > 1)")
stray = q("SELECT count(*) FROM seats s LEFT JOIN reservations r ON r.id = s.reservation_id"
          " WHERE s.status <> 0 AND (r.id IS NULL OR r.status NOT IN ('HELD', 'CONFIRMED'))")
paid_twice = q("SELECT count(*) FROM (SELECT reservation_id FROM payments WHERE status ="
               " 'COMPLETED' GROUP BY reservation_id HAVING count(*) > 1)")
ledger = q("SELECT count(*) FROM users u WHERE balance <> (SELECT coalesce(sum(amount), 0)"
           " FROM balance_ledger WHERE user_id = u.id)")
sold = q("SELECT count(*) FROM seats WHERE status = 2")
pays = q("SELECT count(*) FROM payments WHERE status = 'COMPLETED'")
print(double + stray, paid_twice, ledger, sold, pays)
PYEOF
)
read -r DOUBLE PAID_TWICE LEDGER_BAD SOLD PAYS <<<"$DBCHECK"

# shellcheck disable=SC2317  # called by save_report
report() {
  echo "booking: $USERS users (wrk -t$THREADS -c$USERS -d$DURATION), sessions -> seats -> hold -> pay,"
  echo "$((CONCERTS * SESSIONS * SEATS)) seats stored, $(nproc) cores, $(date -u +%FT%TZ)"
  echo "$("$BIN" --version 2>&1 | head -1), $(nginx -v 2>&1 | sed 's/.*: //')"
  echo
  printf '%-30s %10s %9s %9s %9s %7s\n' "target" "req/s" "p50 ms" "p95 ms" "p99 ms" "errors"
  printf '%-30s %10s %9s %9s %9s %7s\n' "nginx    same bytes" "$N_RPS" "$N_P50" "$N_P95" "$N_P99" "$N_ERR"
  printf '%-30s %10s %9s %9s %9s %7s\n' "concertd booking flow" "$C_RPS" "$C_P50" "$C_P95" "$C_P99" "$C_ERR"
  echo
  echo "ratio concertd/nginx: req/s $(ratio "$C_RPS" "$N_RPS")  p95 $(ratio "$C_P95" "$N_P95")  p99 $(ratio "$C_P99" "$N_P99")"
  echo "concertd run: $(cpu_line concertd); nginx run: machine steal $(cut -d' ' -f1 "$WORK/nginx.cpu") %"
  echo "concertd: $FLOW; in the database: $SOLD seats sold, $PAYS payments (the runs and the warm-up)"
  echo
  echo "paced: $PACED"
  echo
  verdict "$(lt "$C_P95" 5 && echo 1)" "booking flow p95 < 5 ms at $USERS users, saturated (got $C_P95 ms)"
  verdict "$(lt "$(pkv p95_ms)" 5 && [ "$(pkv errors)" = 0 ] && echo 1)" \
    "booking flow p95 < 5 ms at $USERS users, each one flow per $FLOW_PERIOD ms (got $(pkv p95_ms) ms, $(pkv errors) errors)"
  verdict "$([ "$DOUBLE" -eq 0 ] && [ "$PAID_TWICE" -eq 0 ] && echo 1)" \
    "0 double bookings (seats in two live reservations: $DOUBLE, reservations paid twice: $PAID_TWICE)"
  verdict "$([ "$LEDGER_BAD" -eq 0 ] && echo 1)" "every balance equals its ledger ($LEDGER_BAD users off)"
  verdict "$([ "$C_ERR" -eq 0 ] && echo 1)" "concertd answered every request with 2xx ($C_ERR errors)"
}
save_report report "$WORK/nginx.wrk" "$WORK/concertd.wrk" "$WORK/paced.out"
bench_exit
exit 0

#!/usr/bin/env bash
# balance.sh -- balance charge + lookup (half POST .../balance/charge of 1000
# won, half GET .../balance, random users), against nginx answering the
# very same bytes in the same run (DESIGN.md 6: "balance charge + lookup:
# >= 30,000 TPS, p95 < 5 ms, durable").
#
#   bench/balance.sh
#   BENCH_CONNS=256 BENCH_DURATION=5s bench/balance.sh
#
# Environment (defaults in brackets), besides those of bench/lib.sh
# (CONCERTD_BIN, BENCH_DURATION [8s], BENCH_WARMUP [2s], BENCH_THREADS [2],
# BENCH_SERVE_ARGS, BENCH_KEEP):
#   BENCH_CONNS      wrk connections                                [64]
#   BENCH_USERS      users charged and read                         [1000]
#   BENCH_STRICT=1   exit 2 when a target FAILs                     [report only]
#
# Every charge is durable before its 200 (group commit, synchronous=FULL).
# Afterwards the database is checked: each balance equals its ledger, and
# the ledger holds a row for every charge answered 200 (at least).
set -euo pipefail

BENCH_NAME=balance
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CONNS=${BENCH_CONNS:-64}
USERS=${BENCH_USERS:-1000}
LUA=$ROOT/bench/lua/balance.lua

DB=$WORK/balance.db
"$BIN" seed --db "sqlite:$DB" --concerts 1 --sessions-per-concert 1 --seats-per-session 1 \
  --users "$USERS" >/dev/null || die "seed failed"
start_concertd "$DB"

mkdir -p "$WORK/www"
curl -sS --max-time 10 -o "$WORK/www/charge" -X POST -H 'Content-Type: application/json' \
  --data '{"amount":1000}' "$C/api/v1/users/$USERS/balance/charge" || die "charge failed"
curl -sS --max-time 10 -o "$WORK/www/balance" "$C/api/v1/users/$USERS/balance" \
  || die "balance failed"
grep -q '"balance":1000' "$WORK/www/balance" || die "unexpected balance: $(cat "$WORK/www/balance")"

start_nginx "$(nginx_return /charge 200 "$WORK/www/charge")
$(nginx_return /balance 200 "$WORK/www/balance")"
wait_http "$N/balance" 10 || die "nginx did not start: $(tail -20 "$WORK/nginx/error.log")"

wrk_run nginx "$N" "$LUA" "$CONNS" nginx "$USERS"
BEFORE=$("$PY" -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT count(*) FROM balance_ledger").fetchone()[0])' "$DB")
wrk_warm "$C" "$LUA" "$CONNS" concertd "$USERS"
MID=$("$PY" -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT count(*) FROM balance_ledger").fetchone()[0])' "$DB")
wrk_measure concertd "$C" "$LUA" "$CONNS" concertd "$USERS"

read -r N_RPS N_P50 N_P95 N_P99 N_ERR < <(wrk_parse "$WORK/nginx.wrk")
read -r C_RPS C_P50 C_P95 C_P99 C_ERR < <(wrk_parse "$WORK/concertd.wrk")
SENT=$(sed -n 's/^CHARGES sent=\([0-9]*\).*/\1/p' "$WORK/concertd.wrk")
SECS=$(secs "$DURATION")
read -r LEDGER_BAD ROWS < <("$PY" - "$DB" "$MID" <<'PYEOF'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
bad = c.execute("SELECT count(*) FROM users u WHERE balance <> (SELECT coalesce(sum(amount), 0)"
                " FROM balance_ledger WHERE user_id = u.id)").fetchone()[0]
rows = c.execute("SELECT count(*) FROM balance_ledger").fetchone()[0] - int(sys.argv[2])
print(bad, rows)
PYEOF
)
# Every charge answered 200 has its ledger row; a charge still in flight when
# wrk stopped may have committed too, so rows may exceed answered charges.
ANSWERED=$(awk -v s="$SENT" -v c="$CONNS" 'BEGIN { print s - c }')

# shellcheck disable=SC2317  # called by save_report
report() {
  echo "balance: charge + lookup, $USERS users, wrk -t$THREADS -c$CONNS -d$DURATION, $(nproc) cores, $(date -u +%FT%TZ)"
  echo "$("$BIN" --version 2>&1 | head -1), $(nginx -v 2>&1 | sed 's/.*: //'); the ledger had $BEFORE rows before the run"
  echo
  printf '%-30s %10s %9s %9s %9s %7s\n' "target" "req/s" "p50 ms" "p95 ms" "p99 ms" "errors"
  printf '%-30s %10s %9s %9s %9s %7s\n' "nginx    same bytes" "$N_RPS" "$N_P50" "$N_P95" "$N_P99" "$N_ERR"
  printf '%-30s %10s %9s %9s %9s %7s\n' "concertd charge + lookup" "$C_RPS" "$C_P50" "$C_P95" "$C_P99" "$C_ERR"
  echo
  echo "ratio concertd/nginx: req/s $(ratio "$C_RPS" "$N_RPS")  p95 $(ratio "$C_P95" "$N_P95")  p99 $(ratio "$C_P99" "$N_P99")"
  echo "concertd run: $(cpu_line concertd); nginx run: machine steal $(cut -d' ' -f1 "$WORK/nginx.cpu") %"
  echo "durable charges committed in the measured run: $ROWS ($(awk -v r="$ROWS" -v s="$SECS" 'BEGIN { printf "%.0f", r / s }')/s)"
  echo
  verdict "$(ge "$C_RPS" 30000 && echo 1)" "charge + lookup >= 30,000 req/s (got $C_RPS)"
  verdict "$(lt "$C_P95" 5 && echo 1)" "p95 < 5 ms at $CONNS connections (got $C_P95 ms)"
  verdict "$([ "$LEDGER_BAD" -eq 0 ] && ge "$ROWS" "$ANSWERED" && echo 1)" \
    "every balance equals its ledger ($LEDGER_BAD off), a ledger row per answered charge ($ROWS rows, >= $ANSWERED answered)"
  verdict "$([ "$C_ERR" -eq 0 ] && echo 1)" "concertd answered every request with 2xx ($C_ERR errors)"
}
save_report report "$WORK/nginx.wrk" "$WORK/concertd.wrk"
bench_exit
exit 0

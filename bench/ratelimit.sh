#!/usr/bin/env bash
# ratelimit.sh -- does a flood from one user hurt everyone else? (issue 11)
#
# Other users poll the waiting room, paced (concert-load --rate: VICTIMS
# tokens, each polled every second, latency counted from when each poll
# was due). Their p99 is measured twice in the same run on the same
# server, after a 3 s warm-up: alone (the reference), and while one user
# floods seat holds at FLOOD_RATE requests a second (bench/lua/flood_hold.lua,
# wrk -t1 -c$FLOOD_CONNS, each connection pausing between requests; the
# rate is the attacker's, not paced by how fast concertd refuses).
# Target: the flood at most doubles the others' p99.
#
# The same two measurements are then repeated with the limits off
# (--limit-hold-user 0 --max-live-holds 0) to show what they buy.
#
# Environment (defaults in brackets):
#   BENCH_VICTIMS      users polling                       [2000]
#   BENCH_POLL_SECS    each measurement                    [10]
#   BENCH_FLOOD_CONNS  connections of the flood            [32]
#   BENCH_FLOOD_RATE   flood requests a second (at most)   [5000]
#   BENCH_STRICT=1     exit 2 when the target FAILs        [report only]
#   BENCH_KEEP=1       keep the temp dir
#   CONCERTD_BIN       binary to measure    [build/release/concertd, built if needed]
set -euo pipefail

BENCH_NAME=ratelimit
BENCH_LIMITS= # the defaults are what is measured (lib.sh turns them off otherwise)
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
VICTIMS=${BENCH_VICTIMS:-2000}
POLL_SECS=${BENCH_POLL_SECS:-10}
FLOOD_CONNS=${BENCH_FLOOD_CONNS:-32}
FLOOD_RATE=${BENCH_FLOOD_RATE:-5000}
FLOOD_DELAY=$((FLOOD_CONNS * 1000 / FLOOD_RATE))

"$BIN" seed --db "sqlite:$WORK/seed.db" --users 1 --active-tokens 'queue_token_{n}' \
  >/dev/null 2>"$WORK/seed.err" || die "seed failed: $(tail -5 "$WORK/seed.err")"

kv() { sed -n "s/.*[ ^]$1=\([^ ]*\).*/\1/p" <<<" $2"; }
count_429() {
  curl -s "$C/metrics" | awk '/^concertd_http_requests_total/ && /reservations/ && /status="429"/ { n += $NF } END { print n + 0 }'
}

# poll NAME SECS WHAT: every victim polls once a second for SECS over 64
# connections; WORK/NAME.WHAT gets the summary line (load_kv).
poll() {
  "$LOAD" --target "$C" --scenario get --path /api/v1/waiting-queues --tokens "$WORK/$1.tokens" \
    --vus "$VICTIMS" --connections 64 --rate "$VICTIMS/s" --duration "$2s" \
    --json "$WORK/$1.$3.json" >"$WORK/$1.$3.out" 2>&1 || die "poll failed: $(tail -5 "$WORK/$1.$3.out")"
  load_kv "$WORK/$1.$3.json" >"$WORK/$1.$3"
}

# measure NAME [serve args...]: a fresh copy of the seed, the victims enter,
# then a paced poll alone and one beside the flood. Sets NAME_base, NAME_flood
# (summary lines), NAME_wrk (file) and NAME_429.
measure() {
  local name=$1
  shift
  cp "$WORK/seed.db" "$WORK/$name.db"
  start_concertd "$WORK/$name.db" --max-connections-per-ip 0 --queue-max-active 100000 \
    --queue-waiting-idle 1h "$@"
  "$LOAD" --target "$C" --scenario get --method POST --path /api/v1/waiting-queues \
    --body '{"userId":{n}}' --vus "$VICTIMS" --connections 16 --iterations 1 \
    --json "$WORK/$name.enter.json" >"$WORK/$name.enter" 2>&1 \
    || die "enter failed: $(cat "$WORK/$name.enter")"
  "$PY" - "$WORK/$name.db" >"$WORK/$name.tokens" <<'PYEOF'
import sqlite3, sys
for (t,) in sqlite3.connect(sys.argv[1]).execute(
        "SELECT token FROM waiting_tokens ORDER BY user_id"):
    print(t)
PYEOF
  poll "$name" 3 warm >/dev/null
  say "$name: paced poll alone, ${POLL_SECS}s"
  poll "$name" "$POLL_SECS" base
  say "$name: paced poll beside the flood, ${POLL_SECS}s"
  wrk -t1 -c"$FLOOD_CONNS" -d"$((POLL_SECS + 2))s" -s "$ROOT/bench/lua/flood_hold.lua" \
    "$C" -- queue_token_1 50 "$FLOOD_DELAY" >"$WORK/$name.wrk" 2>&1 &
  local wpid=$!
  track "$wpid"
  sleep 1
  poll "$name" "$POLL_SECS" flood
  wait "$wpid" || die "wrk flood failed: $(cat "$WORK/$name.wrk")"
  kill -0 "$CPID" 2>/dev/null || die "concertd died: $(tail -20 "$WORK/concertd.err")"
  printf -v "${name}_429" '%s' "$(count_429)"
  kill -TERM "$CPID"
  for _ in $(seq 100); do kill -0 "$CPID" 2>/dev/null || break; sleep 0.1; done
}

measure on
measure off --limit-hold-user 0 --max-live-holds 0

report() {
  local m base flood b99 f99 rps
  echo "ratelimit: $VICTIMS users polling every 1 s over 64 connections, ${POLL_SECS}s each;"
  echo "flood: one user holding seats, wrk -t1 -c$FLOOD_CONNS, ${FLOOD_DELAY} ms between a connection's requests (<= $FLOOD_RATE/s)"
  echo "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end, $(date -u +%FT%TZ)"
  echo "$("$BIN" --version 2>&1 | head -1)"
  echo
  printf '%-12s %12s %12s %12s %8s %12s %10s\n' limits "p99 alone" "p99 flood" "flood/alone" \
    errors "flood req/s" "429s"
  for m in on off; do
    base=$(cat "$WORK/$m.base") flood=$(cat "$WORK/$m.flood")
    b99=$(kv p99_ms "$base") f99=$(kv p99_ms "$flood")
    rps=$(awk '/Requests\/sec:/ { print int($2) }' "$WORK/$m.wrk")
    local n429_var="${m}_429"
    printf '%-12s %10s ms %10s ms %12s %8s %12s %10s\n' "$m" "$b99" "$f99" "$(ratio "$f99" "$b99")" \
      "$(( $(kv errors "$base") + $(kv errors "$flood") ))" "$rps" "${!n429_var}"
  done
  echo
  b99=$(kv p99_ms "$(cat "$WORK/on.base")") f99=$(kv p99_ms "$(cat "$WORK/on.flood")")
  local ok=0
  le "$(ratio "$f99" "$b99")" 2 && ok=1
  verdict "$ok" "with limits on, the flood raises the others' p99 by $(ratio "$f99" "$b99")x (target <= 2x)"
  echo
  for m in on off; do echo "$m alone:  $(cat "$WORK/$m.base")"; echo "$m flood:  $(cat "$WORK/$m.flood")"; done
}
save_report report "$WORK/on.wrk" "$WORK/off.wrk"
bench_exit

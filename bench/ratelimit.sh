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
# (--limit-hold-user 0 --max-live-holds 0) to show what they buy, and once
# more with the limits on but the flood sent to nginx answering the same
# 429 bytes instead of to concertd: the control. What the flood costs the
# others there is the price of sharing the cores with the flood's
# generator (wrk) and its sockets, which no change to concertd can
# remove; the target is only meaningful where the control is well under it.
# So a second verdict compares the others' p99 during the flood at concertd
# with their p99 during the flood at nginx: what concertd's refusing adds.
#
# Beside the p99s the report gives CPU time from /proc: concertd's in each
# window and per flood request (the cost of a refusal, which a loaded
# machine disturbs far less than a p99), wrk's, and how busy the whole
# machine was (other jobs on it show there).
#
# Environment (defaults in brackets):
#   BENCH_VICTIMS      users polling                       [2000]
#   BENCH_POLL_SECS    each measurement        [BENCH_DURATION in s, 10]
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
POLL_SECS=${BENCH_POLL_SECS:-$(secs "$DURATION")}
FLOOD_CONNS=${BENCH_FLOOD_CONNS:-32}
FLOOD_RATE=${BENCH_FLOOD_RATE:-5000}
FLOOD_DELAY=$((FLOOD_CONNS * 1000 / FLOOD_RATE))
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

"$BIN" seed --db "sqlite:$WORK/seed.db" --users 1 --active-tokens 'queue_token_{n}' \
  >/dev/null 2>"$WORK/seed.err" || die "seed failed: $(tail -5 "$WORK/seed.err")"

kv() { sed -n "s/.*[ ^]$1=\([^ ]*\).*/\1/p" <<<" $2"; }
TICK=$(getconf CLK_TCK)
# cpu_ms PID: user + system CPU time the process has used so far, in ms.
cpu_ms() { awk -v t="$TICK" '{ sub(/.*\) /, ""); print int(($12 + $13) * 1000 / t) }' "/proc/$1/stat"; }
# busy_ticks: CPU ticks spent not idle, over every core, so far.
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
# window NAME WHAT CMD...: runs CMD and writes WORK/NAME.WHAT.cpu: concertd's
# CPU ms over it and how busy the machine was (% of all cores).
window() {
  local name=$1 what=$2 c0 b0 t0 c1 b1 t1
  shift 2
  c0=$(cpu_ms "$CPID") b0=$(busy_ticks) t0=$(date +%s%N)
  "$@"
  c1=$(cpu_ms "$CPID") b1=$(busy_ticks) t1=$(date +%s%N)
  awk -v c=$((c1 - c0)) -v b=$((b1 - b0)) -v ns=$((t1 - t0)) -v t="$TICK" -v n="$(nproc)" \
    'BEGIN { printf "concertd_cpu_ms=%d machine_busy_pct=%.0f\n", c, 100 * b / t / (ns / 1e9) / n }' \
    >"$WORK/$name.$what.cpu"
}
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

# measure NAME FLOOD_AT [serve args...]: a fresh copy of the seed, the
# victims enter, then a paced poll alone and one beside the flood, which
# goes to FLOOD_AT (concertd when empty). Writes WORK/NAME.{base,flood}
# (summary lines), NAME.*.cpu, NAME.wrk, NAME.wrkcpu; sets NAME_429.
measure() {
  local name=$1 at=$2
  shift 2
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
  window "$name" base poll "$name" "$POLL_SECS" base
  say "$name: paced poll beside the flood (at ${at:-concertd}), ${POLL_SECS}s"
  wrk -t1 -c"$FLOOD_CONNS" -d"$((POLL_SECS + 2))s" -s "$ROOT/bench/lua/flood_hold.lua" \
    "${at:-$C}" -- queue_token_1 50 "$FLOOD_DELAY" >"$WORK/$name.wrk" 2>&1 &
  local wpid=$! w0
  track "$wpid"
  sleep 1
  w0=$(cpu_ms "$wpid")
  window "$name" flood poll "$name" "$POLL_SECS" flood
  echo "wrk_cpu_ms=$(($(cpu_ms "$wpid") - w0))" >"$WORK/$name.wrkcpu"
  wait "$wpid" || die "wrk flood failed: $(cat "$WORK/$name.wrk")"
  kill -0 "$CPID" 2>/dev/null || die "concertd died: $(tail -20 "$WORK/concertd.err")"
  printf -v "${name}_429" '%s' "$(count_429)"
  kill -TERM "$CPID"
  for _ in $(seq 100); do kill -0 "$CPID" 2>/dev/null || break; sleep 0.1; done
}

# The control's nginx answers the flood's path with concertd's own 429 body.
echo '{"error":{"code":"RATE_LIMITED","message":"too many seat holds for this user; retry in 1 s"}}' \
  >"$WORK/429.json"
start_nginx "$(nginx_return /api/v1/concerts/1/sessions/1/reservations 429 "$WORK/429.json")"
wait_http "$N/api/v1/concerts/1/sessions/1/reservations" 10 || true

measure on ""
measure off "" --limit-hold-user 0 --max-live-holds 0
measure ctl "$N"

report() {
  local m base flood b99 f99 rps cb cf fl_us label
  echo "ratelimit: $VICTIMS users polling every 1 s over 64 connections, ${POLL_SECS}s each;"
  echo "flood: one user holding seats, wrk -t1 -c$FLOOD_CONNS, ${FLOOD_DELAY} ms between a connection's requests (<= $FLOOD_RATE/s)"
  echo "$(nproc) cores, load average $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end, $(date -u +%FT%TZ)"
  echo "$("$BIN" --version 2>&1 | head -1)"
  echo
  printf '%-22s %10s %10s %7s %6s %8s %7s %12s %12s %9s %10s\n' "" "p99 alone" "p99 flood" \
    ratio errors "flood/s" 429s "concertd CPU" "us/flood req" "wrk CPU" "machine"
  printf '%-22s %10s %10s %7s %6s %8s %7s %12s %12s %9s %10s\n' "" ms ms "" "" "" "" \
    "alone/flood" "" "" "busy %"
  for m in on off ctl; do
    case $m in on) label="limits on" ;; off) label="limits off" ;; ctl) label="control: flood->nginx" ;; esac
    base=$(cat "$WORK/$m.base") flood=$(cat "$WORK/$m.flood")
    b99=$(kv p99_ms "$base") f99=$(kv p99_ms "$flood")
    rps=$(awk '/Requests\/sec:/ { print int($2) }' "$WORK/$m.wrk")
    cb=$(kv concertd_cpu_ms "$(cat "$WORK/$m.base.cpu")") cf=$(kv concertd_cpu_ms "$(cat "$WORK/$m.flood.cpu")")
    fl_us=$(awk -v a="$cb" -v b="$cf" -v r="$rps" -v s="$POLL_SECS" \
      'BEGIN { if (r > 0) printf "%.1f", (b - a) * 1000 / (r * s); else print "n/a" }')
    local n429_var="${m}_429"
    printf '%-22s %10s %10s %7s %6s %8s %7s %12s %12s %9s %10s\n' "$label" "$b99" "$f99" \
      "$(ratio "$f99" "$b99")" "$(($(kv errors "$base") + $(kv errors "$flood")))" "$rps" \
      "${!n429_var}" "$cb/$cf ms" "$fl_us" "$(kv wrk_cpu_ms "$(cat "$WORK/$m.wrkcpu")") ms" \
      "$(kv machine_busy_pct "$(cat "$WORK/$m.base.cpu")")/$(kv machine_busy_pct "$(cat "$WORK/$m.flood.cpu")")"
  done
  echo
  b99=$(kv p99_ms "$(cat "$WORK/on.base")") f99=$(kv p99_ms "$(cat "$WORK/on.flood")")
  local ok=0
  le "$(ratio "$f99" "$b99")" 2 && ok=1
  verdict "$ok" "with limits on, the flood raises the others' p99 by $(ratio "$f99" "$b99")x (target <= 2x)"
  local on_f99=$f99
  b99=$(kv p99_ms "$(cat "$WORK/ctl.base")") f99=$(kv p99_ms "$(cat "$WORK/ctl.flood")")
  echo "      control: the same flood at nginx instead raises it by $(ratio "$f99" "$b99")x"
  # concertd's own share: the others' p99 during the flood at concertd
  # against their p99 during the same flood at nginx, which leaves the
  # machine as loaded by the flood's generator but gives concertd nothing
  # to refuse.
  ok=0
  le "$(ratio "$on_f99" "$f99")" 2 && ok=1
  verdict "$ok" "refusing the flood costs the others' p99 $(ratio "$on_f99" "$f99")x against the control (the same flood, answered by nginx) (target <= 2x)"
  echo
  for m in on off ctl; do
    echo "$m alone:  $(cat "$WORK/$m.base")"
    echo "$m flood:  $(cat "$WORK/$m.flood")"
  done
}
save_report report "$WORK/on.wrk" "$WORK/off.wrk" "$WORK/ctl.wrk"
bench_exit

#!/usr/bin/env bash
# obs_cost.sh -- what observability costs on the queue poll (issue 9: "metrics
# cost < 3 % of queue-poll throughput"), measured so that a noisy, shared
# machine cannot fake the answer:
#
#   1. USERS people enter the waiting room of one concertd, which is then
#      stopped; its database is copied three times.
#   2. Three concertd start on the copies, side by side, the same line in
#      each:  on   --metrics on  (the default), access log off
#             off  --metrics off, access log off
#             log  --metrics on, --log-level info (access log on, to a file)
#   3. ROUNDS rounds; each round measures the poll (GET /api/v1/waiting-
#      queues, a different token each request, wrk -c64) on all three, in an
#      order that rotates every round, so drift and neighbours' bursts fall
#      on each configuration alike.
#   4. Report: per configuration the median req/s, its spread (min..max), the
#      median p99 and the median CPU time concertd spent per request (user +
#      system of all its threads over the measured run, /proc/PID/stat); the
#      cost as the median of the per-round ratios on/off and log/on (each
#      pair measured seconds apart), with their spread, both in req/s and in
#      CPU per request. On a machine shared with other work req/s swings
#      with the neighbours' load; CPU per request much less so: it counts
#      only what concertd itself did.
#   5. Directly: bench/obs_micro.c times the per-request counting
#      (metrics_http_observe) and one access line (log_access, buffered as
#      concertd serve runs it) per call, and the report divides them by the
#      median CPU time of a poll: a cost the neighbours cannot blur.
#
#   bench/obs_cost.sh
#   BENCH_ROUNDS=9 BENCH_DURATION=5s bench/obs_cost.sh
#
# Environment (defaults in brackets):
#   BENCH_USERS     people in line              [20000]
#   BENCH_ROUNDS    rounds                      [7]
#   BENCH_CONNS     wrk -c                      [64]
#   BENCH_DURATION  wrk -d per measured run     [5s]
#   BENCH_WARMUP    wrk -d of each warm-up run  [1s]
#   BENCH_THREADS   wrk -t                      [2]
#   BENCH_STRICT=1  exit 2 when a target FAILs  [report only]
#   BENCH_KEEP=1    keep the temp dir
set -euo pipefail

BENCH_NAME=obs_cost
export BENCH_DURATION=${BENCH_DURATION:-5s} BENCH_WARMUP=${BENCH_WARMUP:-1s}
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
USERS=${BENCH_USERS:-20000}
ROUNDS=${BENCH_ROUNDS:-7}
CONNS=${BENCH_CONNS:-64}
CONFIGS=(on off log)

cc -O2 -Wall -o "$WORK/qpoll" "$ROOT/bench/qpoll.c" || die "cannot build bench/qpoll.c"
S=$ROOT/src/core
cc -O2 -std=c11 -D_GNU_SOURCE -Wall -I"$ROOT/src" -o "$WORK/obs_micro" "$ROOT/bench/obs_micro.c" \
  "$S/metrics.c" "$S/arena.c" "$S/xmalloc.c" "$S/log.c" -lpthread || die "cannot build bench/obs_micro.c"
"$BIN" seed --db "sqlite:$WORK/line.db" --users 0 >/dev/null 2>"$WORK/seed.err" \
  || die "seed failed: $(tail -5 "$WORK/seed.err")"
LINE_ARGS=(--max-connections-per-ip 0 --queue-max-active 1000 --queue-waiting-idle 1h)
start_concertd "$WORK/line.db" "${LINE_ARGS[@]}"
say "entering $USERS users ..."
"$WORK/qpoll" enter 127.0.0.1 "$CPORT" 1 "$USERS" 64 "$WORK/tokens" >"$WORK/enter.out" \
  || die "enter failed: $(cat "$WORK/enter.out")"
kill -TERM "$CPID"
for _ in $(seq 100); do kill -0 "$CPID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$CPID" 2>/dev/null && die "concertd did not stop"

declare -A URL PID
for cfg in "${CONFIGS[@]}"; do
  cp "$WORK/line.db" "$WORK/$cfg.db"
  case $cfg in
    on) args=(--metrics on --access-log off) ;;
    off) args=(--metrics off --access-log off) ;;
    log) args=(--metrics on --access-log on --log-level info) ;;
  esac
  start_concertd "$WORK/$cfg.db" "${LINE_ARGS[@]}" "${args[@]}"
  mv "$WORK/concertd.err" "$WORK/$cfg.err" # the access log, for log
  URL[$cfg]=$C
  PID[$cfg]=$CPID
done
CPID= # wrk_measure checks CPID; each run checks its own server below

poll_lua "$WORK/tokens" "$WORK/poll.lua"

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; } # user + system, all threads

for r in $(seq "$ROUNDS"); do
  for k in 0 1 2; do # rotate the order: on off log, off log on, log on off, ...
    cfg=${CONFIGS[$(((r + k) % 3))]}
    wrk_warm "${URL[$cfg]}/api/v1/waiting-queues" "$WORK/poll.lua" "$CONNS"
    t0=$(cpu_ticks "${PID[$cfg]}")
    wrk_measure "${cfg}_$r" "${URL[$cfg]}/api/v1/waiting-queues" "$WORK/poll.lua" "$CONNS"
    kill -0 "${PID[$cfg]}" 2>/dev/null || die "concertd ($cfg) died: $(tail "$WORK/$cfg.err")"
    echo $(($(cpu_ticks "${PID[$cfg]}") - t0)) >"$WORK/${cfg}_$r.ticks"
  done
done
TCK=$(getconf CLK_TCK)
say "obs_micro ..."
MICRO=$("$WORK/obs_micro" 2000000 2>"$WORK/micro.log") || die "obs_micro failed"
rm -f "$WORK/micro.log" 
LOG_LINES=$(grep -c ' access: ' "$WORK/log.err" || true)

# stats: reads numbers, prints "median min max".
stats() { sort -g | awk '{ v[NR] = $1 } END {
  m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
  printf "%.3f %.3f %.3f\n", m, v[1], v[NR] }'; }
col() { # config, field (1 rps, 4 p99): one value per round
  local r
  for r in $(seq "$ROUNDS"); do wrk_parse "$WORK/$1_$r.wrk" | awk -v f="$2" '{ print $f }'; done
}
# cpu_us CONFIG ROUND: concertd's CPU microseconds per request of that run.
cpu_us() {
  awk -v t="$(cat "$WORK/$1_$2.ticks")" -v hz="$TCK" '
    / requests in / { n = $1 } END { printf "%.3f\n", n ? t / hz * 1e6 / n : 0 }' "$WORK/$1_$2.wrk"
}
rps() { wrk_parse "$WORK/$1_$2.wrk" | cut -d' ' -f1; }
paired() { # measure (rps or cpu_us), a, b: per-round ratio a/b
  local r
  for r in $(seq "$ROUNDS"); do
    awk -v a="$("$1" "$2" "$r")" -v b="$("$1" "$3" "$r")" 'BEGIN { printf "%.4f\n", a / b }'
  done
}
cpu_col() { local r; for r in $(seq "$ROUNDS"); do cpu_us "$1" "$r"; done; }

report() {
  local cfg rps p99 errs
  echo "obs_cost: queue poll, $USERS users in line, $ROUNDS rounds x 3 configurations interleaved,"
  echo "wrk -t$THREADS -c$CONNS -d$DURATION (warm-up $WARMUP), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
  echo "$("$BIN" --version 2>&1 | head -1)"
  echo
  printf '%-40s %22s %8s %20s %6s\n' "configuration" "req/s median (min..max)" "p99 ms" \
    "CPU us/req (min..max)" "errors"
  for cfg in "${CONFIGS[@]}"; do
    read -r rps rmin rmax < <(col "$cfg" 1 | stats)
    read -r cpu cmin cmax < <(cpu_col "$cfg" | stats)
    read -r p99 _ _ < <(col "$cfg" 4 | stats)
    errs=$(col "$cfg" 5 | awk '{ s += $1 } END { print s + 0 }')
    case $cfg in
      on) name="on: metrics on, access log off" ;;
      off) name="off: metrics off, access log off" ;;
      log) name="log: metrics on, access log on (file)" ;;
    esac
    printf '%-40s %9.0f (%.0f..%.0f) %8s %8.2f (%.2f..%.2f) %6s\n' "$name" "$rps" "$rmin" "$rmax" \
      "$p99" "$cpu" "$cmin" "$cmax" "$errs"
  done
  echo
  local m lo hi c clo chi
  pct() { awk -v m="$1" 'BEGIN { printf "%.1f", (1 - m) * 100 }'; }
  read -r m lo hi < <(paired rps on off | stats)
  read -r c clo chi < <(paired cpu_us off on | stats) # off/on: < 1 when on costs more
  echo "metrics, on vs off (median of per-round ratios, min..max):"
  echo "  req/s on/off      $m ($lo..$hi): cost $(pct "$m") %"
  echo "  CPU/req off/on    $c ($clo..$chi): cost $(pct "$c") %"
  verdict "$(ge "$m" 0.97 && echo 1)" "counting requests for /metrics costs < 3 % of poll req/s (median on/off $m)"
  verdict "$(ge "$c" 0.97 && echo 1)" "counting requests for /metrics costs < 3 % CPU per poll (median off/on $c)"
  read -r m lo hi < <(paired rps log on | stats)
  read -r c clo chi < <(paired cpu_us on log | stats)
  echo "access log, on vs off ($LOG_LINES lines written):"
  echo "  req/s log/on      $m ($lo..$hi): cost $(pct "$m") %"
  echo "  CPU/req on/log    $c ($clo..$chi): cost $(pct "$c") %"
  local on_cpu obs line
  read -r on_cpu _ _ < <(cpu_col on | stats)
  obs=$(sed -n 's/.*observe_ns=\([^ ]*\).*/\1/p' <<<"$MICRO")
  line=$(sed -n 's/.*access_line_ns=\([^ ]*\).*/\1/p' <<<"$MICRO")
  echo "directly (bench/obs_micro.c: $MICRO), against $on_cpu us of CPU per poll:"
  echo "  counting one request  $obs ns = $(awk -v a="$obs" -v c="$on_cpu" 'BEGIN { printf "%.2f", a / (c * 1000) * 100 }') % of a poll"
  echo "  one access line       $line ns = $(awk -v a="$line" -v c="$on_cpu" 'BEGIN { printf "%.2f", a / (c * 1000) * 100 }') % of a poll"
  verdict "$(lt "$(awk -v a="$obs" -v c="$on_cpu" 'BEGIN { print a / (c * 1000) }')" 0.03 && echo 1)" \
    "counting one request costs < 3 % of a poll's CPU (directly)"
  echo "per round, req/s and CPU us/req (on off log):"
  for r in $(seq "$ROUNDS"); do
    printf '  %s' "$r:"
    for cfg in "${CONFIGS[@]}"; do printf ' %s/%s' "$(rps "$cfg" "$r")" "$(cpu_us "$cfg" "$r")"; done
    echo
  done
}

save_report report "$WORK"/*_[0-9]*.wrk
bench_exit

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
#   4. Report: per configuration the median req/s, its spread (min..max) and
#      the median p99; the cost as the median of the per-round ratios on/off
#      and log/on (each pair measured seconds apart), with their spread.
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

cat >"$WORK/poll.lua" <<EOF
local tokens = {}
local i = 0
init = function(args)
  for line in io.lines("$WORK/tokens") do tokens[#tokens + 1] = line end
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
  i = math.random(#tokens)
end
request = function()
  i = i % #tokens + 1
  return wrk.format("GET", "/api/v1/waiting-queues", {["QUEUE-TOKEN"] = tokens[i]})
end
EOF

for r in $(seq "$ROUNDS"); do
  for k in 0 1 2; do # rotate the order: on off log, off log on, log on off, ...
    cfg=${CONFIGS[$(((r + k) % 3))]}
    wrk_run "${cfg}_$r" "${URL[$cfg]}/api/v1/waiting-queues" "$WORK/poll.lua" "$CONNS"
    kill -0 "${PID[$cfg]}" 2>/dev/null || die "concertd ($cfg) died: $(tail "$WORK/$cfg.err")"
  done
done
LOG_LINES=$(grep -c ' access: ' "$WORK/log.err" || true)

# stats: reads numbers, prints "median min max".
stats() { sort -g | awk '{ v[NR] = $1 } END {
  m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
  printf "%.3f %.3f %.3f\n", m, v[1], v[NR] }'; }
col() { # config, field (1 rps, 4 p99): one value per round
  local r
  for r in $(seq "$ROUNDS"); do wrk_parse "$WORK/$1_$r.wrk" | awk -v f="$2" '{ print $f }'; done
}
paired() { # a, b: per-round ratio a/b
  local r
  for r in $(seq "$ROUNDS"); do
    awk -v a="$(wrk_parse "$WORK/$1_$r.wrk" | cut -d' ' -f1)" \
      -v b="$(wrk_parse "$WORK/$2_$r.wrk" | cut -d' ' -f1)" 'BEGIN { printf "%.4f\n", a / b }'
  done
}

report() {
  local cfg rps p99 errs
  echo "obs_cost: queue poll, $USERS users in line, $ROUNDS rounds x 3 configurations interleaved,"
  echo "wrk -t$THREADS -c$CONNS -d$DURATION (warm-up $WARMUP), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
  echo "$("$BIN" --version 2>&1 | head -1)"
  echo
  printf '%-42s %22s %10s %7s\n' "configuration" "req/s median (min..max)" "p99 ms" "errors"
  for cfg in "${CONFIGS[@]}"; do
    read -r rps rmin rmax < <(col "$cfg" 1 | stats)
    read -r p99 _ _ < <(col "$cfg" 4 | stats)
    errs=$(col "$cfg" 5 | awk '{ s += $1 } END { print s + 0 }')
    case $cfg in
      on) name="on: metrics on, access log off" ;;
      off) name="off: metrics off, access log off" ;;
      log) name="log: metrics on, access log on (file)" ;;
    esac
    printf '%-42s %9.0f (%.0f..%.0f) %10s %7s\n' "$name" "$rps" "$rmin" "$rmax" "$p99" "$errs"
  done
  echo
  read -r m lo hi < <(paired on off | stats)
  echo "metrics: on/off per-round ratio median $m (min $lo, max $hi); cost $(awk -v m="$m" 'BEGIN { printf "%.1f", (1 - m) * 100 }') %"
  verdict "$(ge "$m" 0.97 && echo 1)" "counting requests for /metrics costs < 3 % of poll req/s (median on/off $m)"
  read -r m lo hi < <(paired log on | stats)
  echo "access log: log/on per-round ratio median $m (min $lo, max $hi); cost $(awk -v m="$m" 'BEGIN { printf "%.1f", (1 - m) * 100 }') %; $LOG_LINES lines written"
  echo "per round (req/s on off log):"
  for r in $(seq "$ROUNDS"); do
    printf '  %s' "$r:"
    for cfg in "${CONFIGS[@]}"; do printf ' %s' "$(wrk_parse "$WORK/${cfg}_$r.wrk" | cut -d' ' -f1)"; done
    echo
  done
}

save_report report "$WORK"/*_[0-9]*.wrk
bench_exit

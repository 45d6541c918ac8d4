#!/usr/bin/env bash
# loadgen.sh -- is concert-load ever the bottleneck? wrk and concert-load
# drive the same nginx with the same core budget, in the same run, and the
# ratio of their req/s is printed (issue 8: concert-load >= 0.8 x wrk).
#
#   bench/loadgen.sh
#   BENCH_CONNS=256 BENCH_DURATION=5s BENCH_ROUNDS=3 bench/loadgen.sh
#
# nginx (BENCH_NGINX_WORKERS workers, [1]) is pinned to CPU BENCH_NGINX_CPU
# [0] and the load generator to CPU BENCH_GEN_CPU [1] with taskset: one core
# each, one thread each (wrk -t1, concert-load --threads 1), the same number
# of keep-alive connections (BENCH_CONNS [64]), the same 16-byte answer.
# wrk and concert-load alternate for BENCH_ROUNDS [2] rounds of
# BENCH_DURATION [5s] each after one unrecorded warm-up; the figures are the
# means over the rounds. Besides req/s, the CPU time each generator used
# (user + sys, bash's `time`) gives requests per CPU-second: how much work
# each does per request, whoever is the bottleneck.
set -euo pipefail

BENCH_NAME=loadgen
DURATION=${BENCH_DURATION:-5s}
export NGINX_WORKERS=${BENCH_NGINX_WORKERS:-1}
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CONNS=${BENCH_CONNS:-64}
ROUNDS=${BENCH_ROUNDS:-2}
NCPU=${BENCH_NGINX_CPU:-0}
GCPU=${BENCH_GEN_CPU:-1}
[ -x "$LOAD" ] || die "no concert-load binary at $LOAD (build it, or set CONCERT_LOAD_BIN)"

mkdir -p "$WORK/www"
printf '{"status":"ok"}\n' >"$WORK/www/hello"
start_nginx "$(nginx_return /hello 200 "$WORK/www/hello")"
wait_http "$N/hello" 10 || die "nginx did not start: $(tail -20 "$WORK/nginx/error.log")"
NGINX_PID=${PIDS[-1]}
for p in $NGINX_PID $(pgrep -P "$NGINX_PID"); do taskset -cp "$NCPU" "$p" >/dev/null; done

TIMEFORMAT='%U %S'
run_wrk() { # out-prefix duration
  { time taskset -c "$GCPU" wrk -t1 -c"$CONNS" -d"$2" --latency "$N/hello" >"$1.out" 2>&1; } 2>"$1.cpu"
}
run_load() { # out-prefix duration
  { time taskset -c "$GCPU" "$LOAD" --target "$N" --scenario get --path /hello --threads 1 \
      --vus "$CONNS" --duration "$2" --json "$1.json" --quiet >"$1.out" 2>&1; } 2>"$1.cpu"
}
say "warm-up ..."
run_wrk "$WORK/warm" 2s
for r in $(seq "$ROUNDS"); do
  say "round $r: wrk -t1 -c$CONNS -d$DURATION; concert-load --threads 1 --vus $CONNS --duration $DURATION"
  run_wrk "$WORK/wrk$r" "$DURATION"
  run_load "$WORK/cl$r" "$DURATION"
done

# Means over the rounds: rps p50 p99 errors cpu_s
WRK=$(for r in $(seq "$ROUNDS"); do
  echo "$(wrk_parse "$WORK/wrk$r.out") $(awk '{print $1 + $2}' "$WORK/wrk$r.cpu")"
done | awk '{ for (i = 1; i <= 6; i++) s[i] += $i } END { printf "%.0f %.3f %.3f %.3f %d %.2f\n", s[1]/NR, s[2]/NR, s[3]/NR, s[4]/NR, s[5], s[6]/NR }')
CL=$(for r in $(seq "$ROUNDS"); do
  "$PY" - "$WORK/cl$r.json" "$(awk '{print $1 + $2}' "$WORK/cl$r.cpu")" <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1]))
m = d["metrics"]
print(f'{m["http_reqs"]["rate"]:.0f} {m["http_req_duration"]["med"]:.3f} {m["http_req_duration"]["p95"]:.3f} '
      f'{m["http_req_duration"]["p99"]:.3f} {m["http_req_failed"]["failed"]} {sys.argv[2]} {m["iterations"]["count"]}')
PYEOF
done | awk '{ for (i = 1; i <= 7; i++) s[i] += $i } END { printf "%.0f %.3f %.3f %.3f %d %.2f %d\n", s[1]/NR, s[2]/NR, s[3]/NR, s[4]/NR, s[5], s[6]/NR, s[7] }')
read -r W_RPS W_P50 _ W_P99 W_ERR W_CPU <<<"$WRK"
read -r L_RPS L_P50 _ L_P99 L_ERR L_CPU L_ITER <<<"$CL"
SECS=$(secs "$DURATION")
per_cpu() { awk -v r="$1" -v s="$SECS" -v c="$2" 'BEGIN { if (c > 0) printf "%.0f", r * s / c; else print "n/a" }'; }

# shellcheck disable=SC2317  # called by save_report
report() {
  echo "loadgen: wrk vs concert-load against nginx ($NGINX_WORKERS worker on CPU $NCPU), generator on CPU $GCPU,"
  echo "$CONNS connections, $ROUNDS x $DURATION each, $(nproc) cores, $(date -u +%FT%TZ)"
  echo "$(wrk -v 2>&1 | head -1 | cut -c1-40), $(nginx -v 2>&1 | sed 's/.*: //')"
  echo
  printf '%-34s %10s %9s %9s %7s %8s %12s\n' "generator" "req/s" "p50 ms" "p99 ms" "errors" "cpu s" "req/cpu-s"
  printf '%-34s %10s %9s %9s %7s %8s %12s\n' "wrk -t1 -c$CONNS" "$W_RPS" "$W_P50" "$W_P99" "$W_ERR" "$W_CPU" "$(per_cpu "$W_RPS" "$W_CPU")"
  printf '%-34s %10s %9s %9s %7s %8s %12s\n' "concert-load --threads 1 --vus $CONNS" "$L_RPS" "$L_P50" "$L_P99" "$L_ERR" "$L_CPU" "$(per_cpu "$L_RPS" "$L_CPU")"
  echo
  echo "ratio concert-load/wrk: req/s $(ratio "$L_RPS" "$W_RPS"), requests per CPU-second $(ratio "$(per_cpu "$L_RPS" "$L_CPU")" "$(per_cpu "$W_RPS" "$W_CPU")")"
  echo "(concert-load completed $L_ITER user iterations, each one checked)"
  echo
  verdict "$(ge "$(ratio "$L_RPS" "$W_RPS")" 0.8 && echo 1)" \
    "concert-load drives >= 0.8 x the req/s of wrk with the same core (got $(ratio "$L_RPS" "$W_RPS"))"
  verdict "$([ "$L_ERR" -eq 0 ] && [ "$W_ERR" -eq 0 ] && echo 1)" "no errors (wrk $W_ERR, concert-load $L_ERR)"
}
save_report report "$WORK/wrk1.out" "$WORK/cl1.out"
bench_exit

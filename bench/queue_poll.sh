#!/usr/bin/env bash
# queue_poll.sh -- the waiting room under an on-sale crowd (DESIGN.md 6):
#
#   1. USERS people enter (POST /api/v1/waiting-queues), 50 at a time
#      (concert-load, 50 users each entering USERS/50 distinct people);
#   2. the queue poll (GET with QUEUE-TOKEN) at full speed with wrk, against
#      nginx answering the same bytes to the same requests, at 64 and at
#      1,000 connections;
#   3. every one of the USERS polls every 3 s over 10,000 connections, paced
#      (concert-load), for BENCH_POLL_SECS; latency counted from when each
#      poll was due; RSS of concertd afterwards. The paced poll is
#      concert-load's constant arrival rate: USERS / 3 s polls a second, each
#      person in turn, from 4 source addresses (127.0.0.1-4).
#
#   bench/queue_poll.sh
#   BENCH_USERS=10000 BENCH_POLL_SECS=10 bench/queue_poll.sh     # a quick look
#   BENCH_REDIS=1 bench/queue_poll.sh     # also the poll with --queue redis://
#
#   4. with BENCH_REDIS=1: a throwaway redis-server, a concertd with
#      --queue redis:// on it, the same USERS entering, and the same wrk
#      poll at 64 and 1,000 connections: the distributed poll (one Redis
#      round trip) against the embedded one and nginx, in the same run.
#
# Environment (defaults in brackets):
#   BENCH_USERS       people in line                              [100000]
#   BENCH_POLL_CONNS  connections of the paced poll               [10000]
#   BENCH_POLL_PERIOD each person polls every this many ms        [3000]
#   BENCH_POLL_SECS   paced poll duration                         [30]
#   BENCH_DURATION    wrk -d per measured run                     [10s]
#   BENCH_WARMUP      wrk -d of the unrecorded warm-up run        [3s]
#   BENCH_THREADS     wrk -t                                      [2]
#   BENCH_SERVE_ARGS  extra `concertd serve` options              []
#   BENCH_REDIS=1     also measure the poll with --queue redis:// [0]
#   BENCH_STRICT=1    exit 2 when a target FAILs                  [report only]
#   BENCH_KEEP=1      keep the temp dir
#   CONCERTD_BIN      binary to measure      [build/release/concertd, built if needed]
set -euo pipefail

BENCH_NAME=queue_poll
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
USERS=${BENCH_USERS:-100000}
POLL_CONNS=${BENCH_POLL_CONNS:-10000}
POLL_PERIOD=${BENCH_POLL_PERIOD:-3000}
POLL_SECS=${BENCH_POLL_SECS:-30}
ulimit -n "$(ulimit -Hn)" # 10,000 client sockets in this process tree

[ -x "$LOAD" ] || die "no concert-load at $LOAD"
ENTER_VUS=50
[ $((USERS % ENTER_VUS)) -eq 0 ] || die "BENCH_USERS must be a multiple of $ENTER_VUS"

DB=$WORK/queue.db
"$BIN" seed --db "sqlite:$DB" --users 0 >/dev/null 2>"$WORK/seed.err" \
  || die "seed failed: $(tail -5 "$WORK/seed.err")"
# Nobody leaves the line during the run: max_active caps admission, and
# nobody goes idle. One client address opens every connection.
SERVE_ARGS=(--max-connections-per-ip 0 --queue-max-active 1000 --queue-waiting-idle 1h)
start_concertd "$DB" "${SERVE_ARGS[@]}"
rss() { awk '/VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$CPID/status"; }
# The peak RSS so far (VmHWM): RSS read after the poll misses the
# connections concert-load has already closed by then.
rss_peak() { awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$CPID/status"; }
# RSS split: anonymous memory (the line, connections, caches) and mapped file
# pages (SQLite's mmap of the database, shared with the kernel's page cache).
rss_split() { awk '/RssAnon|RssFile/ { printf "%s %.0f MB ", $1, $2 / 1024 }' "/proc/$CPID/status"; }

say "entering $USERS users ..."
"$LOAD" --target "$C" --scenario get --method POST --path /api/v1/waiting-queues \
  --body '{"userId":{i}}' --vus "$ENTER_VUS" --iterations $((USERS / ENTER_VUS)) \
  --json "$WORK/enter.json" >"$WORK/enter.out" 2>&1 || die "enter failed: $(cat "$WORK/enter.out")"
ENTER=$(load_kv "$WORK/enter.json")
# Everyone's token, in user order (user n polls with line n).
"$PY" - "$DB" >"$WORK/tokens" <<'PYEOF'
import sqlite3, sys
for (t,) in sqlite3.connect(sys.argv[1]).execute("SELECT token FROM waiting_tokens ORDER BY user_id"):
    print(t)
PYEOF
[ "$(wc -l <"$WORK/tokens")" -eq "$USERS" ] || die "expected $USERS tokens in the database"
RSS_LINE=$(rss)
RSS_LINE_SPLIT=$(rss_split)
kv() { sed -n "s/.*[ ^]$1=\([^ ]*\).*/\1/p" <<<" $2"; }

# The bytes of one poll by someone in the middle of the line, for nginx.
MID=$(sed -n "$((USERS / 2))p" "$WORK/tokens")
mkdir -p "$WORK/www"
chmod 755 "$WORK/www"
fetch "$C/api/v1/waiting-queues" "$WORK/www/poll.json" -H "QUEUE-TOKEN: $MID"
chmod 644 "$WORK/www/poll.json"
grep -q '"status":"WAITING"' "$WORK/www/poll.json" || die "middle token not WAITING"
start_nginx "    location = /api/v1/waiting-queues { alias $WORK/www/poll.json; }"
wait_http "$N/api/v1/waiting-queues" 10 || die "nginx did not start: $(tail "$WORK/nginx/error.log")"

# wrk: every request carries a different token, round robin from a random start.
poll_lua "$WORK/tokens" "$WORK/poll.lua"

for conns in 64 1000; do
  wrk_run "nginx_$conns" "$N/api/v1/waiting-queues" "$WORK/poll.lua" "$conns"
  wrk_run "concertd_$conns" "$C/api/v1/waiting-queues" "$WORK/poll.lua" "$conns"
done

# What /metrics and the access log cost on this poll: bench/obs_cost.sh
# (interleaved rounds, medians and spread; one on/off pair is noise here).

say "paced poll: $USERS users every ${POLL_PERIOD} ms over $POLL_CONNS connections, ${POLL_SECS}s ..."
M0=$(machine_ticks)
"$LOAD" --target "$C" --scenario get --path /api/v1/waiting-queues --tokens "$WORK/tokens" \
  --vus "$USERS" --connections "$POLL_CONNS" --source 127.0.0.1-127.0.0.4 \
  --rate "$((USERS * 1000 / POLL_PERIOD))/s" --duration "${POLL_SECS}s" \
  --json "$WORK/poll.json" --html "$WORK/poll.html" >"$WORK/poll.out" 2>&1 \
  || die "paced poll failed: $(cat "$WORK/poll.out")"
POLL=$(load_kv "$WORK/poll.json")
M1=$(machine_ticks)
POLL_STEAL=$(steal_pct "$M0" "$M1")
RSS_POLL=$(rss)
RSS_PEAK=$(rss_peak)
RSS_POLL_SPLIT=$(rss_split)
kill -0 "$CPID" 2>/dev/null || die "concertd died: $(tail -20 "$WORK/concertd.err")"
STATS=$(curl -s "$C/api/v1/waiting-queues/stats")

# The distributed poll: the same line in Redis, the same wrk runs.
REDIS=${BENCH_REDIS:-0}
if [ "$REDIS" = 1 ]; then
  command -v redis-server >/dev/null || die "redis-server not installed: run scripts/deps"
  kill -TERM "$CPID" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$CPID" 2>/dev/null || break; sleep 0.1; done
  RPORT=$(free_port)
  mkdir -p "$WORK/redis"
  redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK/redis" \
    >"$WORK/redis/redis.log" 2>&1 &
  track $!
  for _ in $(seq 100); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  "$BIN" seed --db "sqlite:$WORK/redis.db" --users 0 >/dev/null 2>"$WORK/seed.err" \
    || die "seed failed: $(tail -5 "$WORK/seed.err")"
  start_concertd "$WORK/redis.db" "${SERVE_ARGS[@]}" --queue "redis://127.0.0.1:$RPORT"
  say "entering $USERS users through --queue redis:// ..."
  "$LOAD" --target "$C" --scenario get --method POST --path /api/v1/waiting-queues \
    --body '{"userId":{i}}' --vus "$ENTER_VUS" --iterations $((USERS / ENTER_VUS)) \
    --json "$WORK/enter_redis.json" >"$WORK/enter_redis.out" 2>&1 \
    || die "enter (redis) failed: $(cat "$WORK/enter_redis.out")"
  ENTER_REDIS=$(load_kv "$WORK/enter_redis.json")
  # Everyone's token, in user order, from the user -> token keys.
  seq 1 "$USERS" | sed 's/^/GET concertd:wr:u:/' | redis-cli -p "$RPORT" >"$WORK/tokens_redis"
  [ "$(grep -c . "$WORK/tokens_redis")" -eq "$USERS" ] || die "expected $USERS tokens in Redis"
  poll_lua "$WORK/tokens_redis" "$WORK/poll_redis.lua"
  for conns in 64 1000; do
    wrk_run "redis_$conns" "$C/api/v1/waiting-queues" "$WORK/poll_redis.lua" "$conns"
  done
fi

report() {
  local conns n c
  echo "queue_poll: $USERS users in line, wrk -t$THREADS -d$DURATION, $(nproc) cores, $(date -u +%FT%TZ)"
  echo "$("$BIN" --version 2>&1 | head -1), $(nginx -v 2>&1 | sed 's/.*: //'), stats $STATS"
  echo
  echo "enter:       $ENTER"
  echo "paced poll:  $POLL"
  echo "             machine steal during the paced poll: $POLL_STEAL %"
  echo "RSS:         ${RSS_LINE} MB after entering (${RSS_LINE_SPLIT}), ${RSS_POLL} MB after the paced poll (${RSS_POLL_SPLIT}), peak ${RSS_PEAK} MB"
  echo
  printf '%-30s %10s %9s %9s %7s\n' "target" "req/s" "p50 ms" "p99 ms" "errors"
  for conns in 64 1000; do
    for n in nginx concertd; do
      read -r rps p50 _ p99 err < <(wrk_parse "$WORK/${n}_$conns.wrk")
      printf '%-30s %10s %9s %9s %7s\n' "$n poll, $conns conns" "$rps" "$p50" "$p99" "$err"
    done
  done
  echo
  for conns in 64 1000; do
    read -r n_rps _ _ n_p99 _ < <(wrk_parse "$WORK/nginx_$conns.wrk")
    read -r c_rps _ _ c_p99 c_err < <(wrk_parse "$WORK/concertd_$conns.wrk")
    echo "ratio concertd/nginx at $conns conns: req/s $(ratio "$c_rps" "$n_rps")  p99 $(ratio "$c_p99" "$n_p99")"
    verdict "$(ge "$c_rps" "$(awk -v n="$n_rps" 'BEGIN { print n * 0.7 }')" && echo 1)" \
      "poll req/s >= 0.7 x nginx at $conns connections (got $(ratio "$c_rps" "$n_rps") x)"
    verdict "$(le "$c_p99" "$(awk -v n="$n_p99" 'BEGIN { print n * 2 }')" && echo 1)" \
      "poll p99 <= 2 x nginx's at $conns connections (got $(ratio "$c_p99" "$n_p99") x)"
    verdict "$([ "$c_err" -eq 0 ] && echo 1)" "poll errors at $conns connections: $c_err"
  done
  if [ "$REDIS" = 1 ]; then
    echo
    echo "enter (redis): $ENTER_REDIS"
    for conns in 64 1000; do
      read -r n_rps _ _ n_p99 _ < <(wrk_parse "$WORK/nginx_$conns.wrk")
      read -r c_rps _ _ c_p99 _ < <(wrk_parse "$WORK/concertd_$conns.wrk")
      read -r r_rps r_p50 _ r_p99 r_err < <(wrk_parse "$WORK/redis_$conns.wrk")
      printf '%-30s %10s %9s %9s %7s\n' "concertd --queue redis, $conns" "$r_rps" "$r_p50" "$r_p99" "$r_err"
      echo "ratio redis/local at $conns conns: req/s $(ratio "$r_rps" "$c_rps")  p99 $(ratio "$r_p99" "$c_p99");" \
        "redis/nginx: req/s $(ratio "$r_rps" "$n_rps")  p99 $(ratio "$r_p99" "$n_p99")"
      verdict "$([ "$r_err" -eq 0 ] && echo 1)" "redis poll errors at $conns connections: $r_err"
    done
  fi
  local perr pp99
  perr=$(kv errors "$POLL")
  pp99=$(kv p99_ms "$POLL")
  verdict "$([ "$perr" = 0 ] && [ "$(kv dropped "$POLL")" = 0 ] && echo 1)" \
    "paced poll of $USERS users: 0 errors, none late to start (got $perr errors, $(kv dropped "$POLL") dropped)"
  verdict "$(lt "$pp99" 50 && echo 1)" "paced poll of $USERS users: p99 < 50 ms (got $pp99 ms)"
  verdict "$(lt "$RSS_PEAK" 256 && echo 1)" "RSS < 256 MB with $USERS in line and $POLL_CONNS connections (peak $RSS_PEAK MB)"
}

save_report report "$WORK"/poll.out "$WORK"/nginx_64.wrk "$WORK"/concertd_64.wrk "$WORK"/nginx_1000.wrk \
  "$WORK"/concertd_1000.wrk \
  $([ "$REDIS" = 1 ] && echo "$WORK/redis_64.wrk $WORK/redis_1000.wrk")
bench_exit

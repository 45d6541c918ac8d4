#!/usr/bin/env bash
# queue_poll.sh -- the waiting room under an on-sale crowd (DESIGN.md 6):
#
#   1. USERS people enter (POST /api/v1/waiting-queues), 64 at a time;
#   2. the queue poll (GET with QUEUE-TOKEN) at full speed with wrk, against
#      nginx answering the same bytes to the same requests, at 64 and at
#      1,000 connections;
#   3. every one of the USERS polls every 3 s over 10,000 connections, paced
#      (bench/qpoll.c), for BENCH_POLL_SECS; latency counted from when each
#      poll was due; RSS of concertd afterwards.
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

cc -O2 -Wall -o "$WORK/qpoll" "$ROOT/bench/qpoll.c" || die "cannot build bench/qpoll.c"

DB=$WORK/queue.db
"$BIN" seed --db "sqlite:$DB" --users 0 >/dev/null 2>"$WORK/seed.err" \
  || die "seed failed: $(tail -5 "$WORK/seed.err")"
# Nobody leaves the line during the run: max_active caps admission, and
# nobody goes idle. One client address opens every connection.
start_concertd "$DB" --max-connections-per-ip 0 --queue-max-active 1000 --queue-waiting-idle 1h
rss() { awk '/VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$CPID/status"; }
# RSS split: anonymous memory (the line, connections, caches) and mapped file
# pages (SQLite's mmap of the database, shared with the kernel's page cache).
rss_split() { awk '/RssAnon|RssFile/ { printf "%s %.0f MB ", $1, $2 / 1024 }' "/proc/$CPID/status"; }

say "entering $USERS users ..."
"$WORK/qpoll" enter 127.0.0.1 "$CPORT" 1 "$USERS" 64 "$WORK/tokens" >"$WORK/enter.out" \
  || die "enter failed: $(cat "$WORK/enter.out")"
ENTER=$(cat "$WORK/enter.out")
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
poll_lua() { # TOKENS-FILE OUT-FILE
  cat >"$2" <<EOF
local tokens = {}
local i = 0
init = function(args)
  for line in io.lines("$1") do tokens[#tokens + 1] = line end
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
  i = math.random(#tokens)
end
request = function()
  i = i % #tokens + 1
  return wrk.format("GET", "/api/v1/waiting-queues", {["QUEUE-TOKEN"] = tokens[i]})
end
EOF
}
poll_lua "$WORK/tokens" "$WORK/poll.lua"

for conns in 64 1000; do
  wrk_run "nginx_$conns" "$N/api/v1/waiting-queues" "$WORK/poll.lua" "$conns"
  wrk_run "concertd_$conns" "$C/api/v1/waiting-queues" "$WORK/poll.lua" "$conns"
done

# The cost of counting requests for /metrics: the same 64-connection poll
# against a concertd started with --metrics off on the same database (the
# line reloads from it), then back to the default for the paced run.
SERVE_ARGS=(--max-connections-per-ip 0 --queue-max-active 1000 --queue-waiting-idle 1h)
restart_concertd() {
  kill -TERM "$CPID" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$CPID" 2>/dev/null || break; sleep 0.1; done
  start_concertd "$DB" "${SERVE_ARGS[@]}" "$@"
}
restart_concertd --metrics off
wrk_run concertd_64_nometrics "$C/api/v1/waiting-queues" "$WORK/poll.lua" 64
restart_concertd

say "paced poll: $USERS users every ${POLL_PERIOD} ms over $POLL_CONNS connections, ${POLL_SECS}s ..."
"$WORK/qpoll" poll 127.0.0.1 "$CPORT" "$WORK/tokens" "$POLL_CONNS" "$POLL_PERIOD" "$POLL_SECS" \
  >"$WORK/poll.out" || die "paced poll failed: $(cat "$WORK/poll.out")"
POLL=$(cat "$WORK/poll.out")
RSS_POLL=$(rss)
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
  "$WORK/qpoll" enter 127.0.0.1 "$CPORT" 1 "$USERS" 64 "$WORK/tokens_redis" >"$WORK/enter_redis.out" \
    || die "enter (redis) failed: $(cat "$WORK/enter_redis.out")"
  ENTER_REDIS=$(cat "$WORK/enter_redis.out")
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
  echo "RSS:         ${RSS_LINE} MB after entering (${RSS_LINE_SPLIT}), ${RSS_POLL} MB after the paced poll (${RSS_POLL_SPLIT})"
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
  read -r on_rps _ _ on_p99 _ < <(wrk_parse "$WORK/concertd_64.wrk")
  read -r off_rps _ _ off_p99 _ < <(wrk_parse "$WORK/concertd_64_nometrics.wrk")
  echo "metrics on/off at 64 conns: req/s $on_rps / $off_rps = $(ratio "$on_rps" "$off_rps"), p99 $on_p99 / $off_p99 ms"
  verdict "$(ge "$on_rps" "$(awk -v n="$off_rps" 'BEGIN { print n * 0.97 }')" && echo 1)" \
    "counting requests for /metrics costs < 3 % of poll req/s (on/off $(ratio "$on_rps" "$off_rps"))"
  local perr pp99
  perr=$(kv errors "$POLL")
  pp99=$(kv p99_ms "$POLL")
  verdict "$([ "$perr" = 0 ] && echo 1)" "paced poll of $USERS users: 0 errors (got $perr)"
  verdict "$(lt "$pp99" 50 && echo 1)" "paced poll of $USERS users: p99 < 50 ms (got $pp99 ms)"
  verdict "$(lt "$RSS_POLL" 256 && echo 1)" "RSS < 256 MB with $USERS in line and $POLL_CONNS connections (got $RSS_POLL MB)"
}

save_report report "$WORK"/nginx_64.wrk "$WORK"/concertd_64.wrk "$WORK"/nginx_1000.wrk \
  "$WORK"/concertd_1000.wrk "$WORK"/concertd_64_nometrics.wrk \
  $([ "$REDIS" = 1 ] && echo "$WORK/redis_64.wrk $WORK/redis_1000.wrk")
bench_exit

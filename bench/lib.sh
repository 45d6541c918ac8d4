#!/usr/bin/env bash
# lib.sh -- what booking.sh and balance.sh share: the binary, a scratch dir
# that is removed on exit, free ports, starting concertd and a throwaway
# nginx that answers fixed bytes, running wrk, and reading its output.
# Sourced, not run. Only processes started here are stopped, by PID.
#
# Expects BENCH_NAME set by the caller. Environment it reads (defaults in
# brackets): CONCERTD_BIN [build/release/concertd, built when needed],
# BENCH_DURATION [8s], BENCH_WARMUP [2s], BENCH_THREADS [2],
# BENCH_SERVE_ARGS [], BENCH_KEEP=1 (keep the scratch dir).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${BENCH_DURATION:-8s}
WARMUP=${BENCH_WARMUP:-2s}
THREADS=${BENCH_THREADS:-2}
PY=/usr/bin/python3

say() { printf '%s\n' "$*" >&2; }
die() { say "$BENCH_NAME: $*"; exit 1; }

# Runs must stay short on the shared 2-core machine.
secs() { awk -v d="$1" 'BEGIN { n = d + 0; if (d ~ /m$/) n *= 60; print n }'; }
[ "$(secs "$DURATION")" -le 20 ] || die "BENCH_DURATION $DURATION is over 20 s"
[ "$(secs "$WARMUP")" -le 20 ] || die "BENCH_WARMUP $WARMUP is over 20 s"

"$ROOT/scripts/deps" --bench

if [ -n "${CONCERTD_BIN:-}" ]; then
  BIN=$CONCERTD_BIN
else
  BIN=$ROOT/build/release/concertd
  [ -d "$ROOT/build/release" ] || (cd "$ROOT" && cmake --preset release >/dev/null)
  (cd "$ROOT" && cmake --build build/release -j "$(nproc)" >/dev/null) || die "release build failed"
fi
[ -x "$BIN" ] || die "no concertd binary at $BIN"

WORK=$(mktemp -d "/tmp/concertd-$BENCH_NAME.XXXXXX")
chmod 755 "$WORK" # nginx workers may run as another user
PIDS=()
# shellcheck disable=SC2317  # called through the EXIT trap
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  if [ "${BENCH_KEEP:-0}" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_http() { # url, seconds
  local deadline=$((SECONDS + $2))
  until curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.1
  done
}

# start_concertd DB [serve args...]: sets CPID and C (base URL).
start_concertd() {
  local db=$1 port
  shift
  port=$(free_port)
  # shellcheck disable=SC2086
  "$BIN" serve --listen "127.0.0.1:$port" --db "sqlite:$db" --log-level warn "$@" \
    ${BENCH_SERVE_ARGS:-} >"$WORK/concertd.out" 2>"$WORK/concertd.err" &
  CPID=$!
  PIDS+=("$CPID")
  C="http://127.0.0.1:$port"
  wait_http "$C/health/live" 30 || die "concertd did not start: $(tail -20 "$WORK/concertd.err")"
}

# start_nginx LOCATIONS: an nginx whose server block holds LOCATIONS (each
# answering fixed bytes with `return`); sets N (base URL).
start_nginx() {
  local port
  port=$(free_port)
  mkdir -p "$WORK/nginx"
  cat >"$WORK/nginx/nginx.conf" <<CONF
daemon off;
worker_processes 2;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 75s;
  tcp_nodelay on;
  server_tokens off;
  server {
    listen 127.0.0.1:$port;
    default_type "application/json; charset=utf-8";
$1
  }
}
CONF
  nginx -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" &
  PIDS+=($!)
  # shellcheck disable=SC2034  # read by the calling script
  N="http://127.0.0.1:$port"
}

# nginx_return PATH STATUS BODY-FILE: a location answering those exact bytes.
nginx_return() {
  local body
  body=$(cat "$3")
  case $body in *"'"* | *\\*) die "body of $1 has a quote or backslash nginx would alter" ;; esac
  printf "    location = %s { return %s '%s'; }\n" "$1" "$2" "$body"
}

# warm URL SCRIPT CONNS [script args...]: an unrecorded warm-up run.
warm() {
  local url=$1 script=$2 conns=$3
  shift 3
  wrk -t"$THREADS" -c"$conns" -d"$WARMUP" -s "$script" "$url" -- "$@" >/dev/null 2>&1 || true
}

# measure NAME URL SCRIPT CONNS [script args...] -> $WORK/NAME.wrk
measure() {
  local name=$1 url=$2 script=$3 conns=$4
  shift 4
  say "wrk $name: -t$THREADS -c$conns -d$DURATION $url"
  wrk -t"$THREADS" -c"$conns" -d"$DURATION" --latency -s "$script" "$url" -- "$@" \
    >"$WORK/$name.wrk" 2>&1 || die "wrk $name failed: $(cat "$WORK/$name.wrk")"
  if [ -n "${CPID:-}" ] && ! kill -0 "$CPID" 2>/dev/null; then
    die "concertd died during $name: $(tail -20 "$WORK/concertd.err")"
  fi
}

# run NAME URL SCRIPT CONNS [script args...]: warm, then measure with the same arguments.
run() {
  local name=$1
  shift
  warm "$@"
  measure "$name" "$@"
}

# parse FILE -> "rps p50 p95 p99 errors" (ms; p95 from the script's LATENCY_MS line)
parse() {
  awk '
    /Requests\/sec:/ { rps = $2 }
    /^LATENCY_MS/ { for (i = 2; i <= NF; i++) { split($i, kv, "="); lat[kv[1]] = kv[2] } }
    /Non-2xx or 3xx responses:/ { err += $NF }
    /Socket errors:/ { gsub(/,/, ""); err += $4 + $6 + $8 + $10 }
    END { printf "%.0f %s %s %s %d\n", rps, lat["p50"], lat["p95"], lat["p99"], err }
  ' "$1"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; }

FAILS=0
verdict() { # ok? text
  if [ "$1" = 1 ]; then echo "PASS  $2"; else echo "FAIL  $2"; FAILS=$((FAILS + 1)); fi
}

# save_report TEXT-FUNCTION RAW-NAMES...: prints the report, keeps it and the
# raw wrk output in bench/out/.
save_report() {
  local fn=$1 out
  shift
  mkdir -p "$ROOT/bench/out"
  out="$ROOT/bench/out/$BENCH_NAME-$(date -u +%Y%m%dT%H%M%SZ).txt"
  "$fn" >"$out" # not in a pipeline: verdict() counts FAILS in this shell
  cat "$out"
  local f
  for f in "$@"; do { echo; echo "== $f"; cat "$WORK/$f.wrk"; } >>"$out"; done
  say "raw wrk output appended to $out"
}

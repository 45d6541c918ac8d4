#!/usr/bin/env bash
# seat_page.sh -- seat-page lookup with 10,000,000 seats stored, and the
# concert list, each against nginx serving the very same bytes (DESIGN.md 6).
#
#   bench/seat_page.sh                   seed a fresh DB in a temp dir, measure
#   BENCH_DB=/tmp/10m.db bench/seat_page.sh
#                                        reuse (or create once) that DB
#
# Environment (defaults in brackets):
#   BENCH_DB          DB file to reuse; seeded when missing      [temp dir]
#   BENCH_DURATION    wrk -d per measured run                    [10s]
#   BENCH_WARMUP      wrk -d of the unrecorded warm-up run       [3s]
#   BENCH_THREADS     wrk -t                                     [2]
#   BENCH_CONNS       wrk -c                                     [64]
#   BENCH_SERVE_ARGS  extra `concertd serve` options             []
#   BENCH_CONCERTS / BENCH_SESSIONS / BENCH_SEATS  seed shape    [200 / 50 / 1000]
#   BENCH_STRICT=1    exit 2 when a target FAILs                 [report only]
#   BENCH_KEEP=1      keep the temp dir (logs, bodies, configs)
#   CONCERTD_BIN      binary to measure        [build/release/concertd, built if needed]
#
# Only processes this script starts are stopped, by PID, on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-3s}
THREADS=${BENCH_THREADS:-2}
CONNS=${BENCH_CONNS:-64}
CONCERTS=${BENCH_CONCERTS:-200}
SESSIONS=${BENCH_SESSIONS:-50}
SEATS=${BENCH_SEATS:-1000}
PAGE=100
PY=/usr/bin/python3

say() { printf '%s\n' "$*" >&2; }
die() { say "seat_page: $*"; exit 1; }

"$ROOT/scripts/deps" --bench

# --- binary ------------------------------------------------------------------
if [ -n "${CONCERTD_BIN:-}" ]; then
  BIN=$CONCERTD_BIN
else
  BIN=$ROOT/build/release/concertd
  if [ ! -d "$ROOT/build/release" ]; then
    (cd "$ROOT" && cmake --preset release >/dev/null)
  fi
  (cd "$ROOT" && cmake --build build/release -j "$(nproc)" >/dev/null) || die "release build failed"
fi
[ -x "$BIN" ] || die "no concertd binary at $BIN"

# --- scratch dir and cleanup ---------------------------------------------------
WORK=$(mktemp -d /tmp/concertd-bench.XXXXXX)
chmod 755 "$WORK"   # nginx workers may run as another user
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

fetch() { # url, out-file: must be a 200
  local code
  code=$(curl -sS --max-time 10 -o "$2" -w '%{http_code}' "$1") || die "GET $1 failed"
  [ "$code" = 200 ] || die "GET $1 -> $code: $(head -c 300 "$2")"
}

# --- database ---------------------------------------------------------------
DB=${BENCH_DB:-$WORK/bench.db}
SEED_SECS=""
if [ -s "$DB" ]; then
  say "reusing $DB"
else
  say "seeding $((CONCERTS * SESSIONS * SEATS)) seats into $DB ..."
  t0=$(date +%s.%N)
  "$BIN" seed --db "sqlite:$DB" --concerts "$CONCERTS" --sessions-per-concert "$SESSIONS" \
    --seats-per-session "$SEATS" >"$WORK/seed.out" 2>"$WORK/seed.err" \
    || die "seed failed: $(tail -5 "$WORK/seed.err")"
  t1=$(date +%s.%N)
  SEED_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
  say "seeded in ${SEED_SECS}s ($(du -h "$DB" | cut -f1))"
fi

# --- concertd ---------------------------------------------------------------
CPORT=$(free_port)
# shellcheck disable=SC2086
"$BIN" serve --listen "127.0.0.1:$CPORT" --db "sqlite:$DB" --log-level warn \
  ${BENCH_SERVE_ARGS:-} >"$WORK/concertd.out" 2>"$WORK/concertd.err" &
PIDS+=($!)
CPID=$!
wait_http "http://127.0.0.1:$CPORT/health/live" 30 \
  || die "concertd did not start: $(tail -20 "$WORK/concertd.err")"
C="http://127.0.0.1:$CPORT"

mkdir -p "$WORK/www"
chmod 755 "$WORK/www"
fetch "$C/api/v1/concerts" "$WORK/www/concerts.json"

# Every (concert, session) pair, for the random seat-page script; the hot
# page for the reference is a session in the middle of the data.
"$PY" - "$C" "$WORK" <<'EOF' || die "could not list sessions"
import json, sys, urllib.request
base, work = sys.argv[1], sys.argv[2]
get = lambda p: json.load(urllib.request.urlopen(base + p, timeout=10))
concerts = [c["concertId"] for c in get("/api/v1/concerts")["concerts"]]
paths, seats = [], 0
for cid in concerts:
    for s in get(f"/api/v1/concerts/{cid}/sessions")["sessions"]:
        paths.append(f"/api/v1/concerts/{cid}/sessions/{s['sessionId']}/seats")
        seats += s["totalSeats"]
if not paths:
    sys.exit("no sessions")
with open(f"{work}/paths.lua", "w") as f:
    f.write("paths = {\n" + "".join(f'  "{p}",\n' for p in paths) + "}\n")
with open(f"{work}/middle", "w") as f:
    f.write(paths[len(paths) // 2])
with open(f"{work}/total_seats", "w") as f:
    f.write(str(seats))
print(f"{len(concerts)} concerts, {len(paths)} sessions, {seats} seats", file=sys.stderr)
EOF
MIDDLE=$(cat "$WORK/middle")
TOTAL_SEATS=$(cat "$WORK/total_seats")
fetch "$C$MIDDLE?limit=$PAGE" "$WORK/www/seats.json"
chmod 644 "$WORK/www/"*.json
NSEATS=$(grep -o '"seatNumber"' "$WORK/www/seats.json" | wc -l)
[ "$NSEATS" -eq "$PAGE" ] || die "seat page of $MIDDLE has $NSEATS seats, want $PAGE"

# wrk scripts: random session and random cursor (concertd), and the same
# request shape against nginx's single file so wrk does the same work.
MAXAFTER=$((SEATS > PAGE ? SEATS - PAGE : 0))
{
  cat "$WORK/paths.lua"
  cat <<EOF
local maxafter = $MAXAFTER
init = function(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1000000) + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
end
request = function()
  local p = paths[math.random(#paths)]
  return wrk.format("GET", p .. "?limit=$PAGE&after=" .. math.random(0, maxafter))
end
EOF
} >"$WORK/concertd_seats.lua"
cat >"$WORK/nginx_seats.lua" <<EOF
local maxafter = $MAXAFTER
request = function()
  return wrk.format("GET", "/seats?limit=$PAGE&after=" .. math.random(0, maxafter))
end
EOF

# --- nginx reference ----------------------------------------------------------
NPORT=$(free_port)
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
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
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  etag off;
  open_file_cache max=16 inactive=600s;
  open_file_cache_valid 600s;
  server_tokens off;
  server {
    listen 127.0.0.1:$NPORT;
    default_type "application/json; charset=utf-8";
    location = /seats { alias $WORK/www/seats.json; }
    location = /concerts { alias $WORK/www/concerts.json; }
  }
}
EOF
nginx -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" &
PIDS+=($!)
N="http://127.0.0.1:$NPORT"
wait_http "$N/concerts" 10 || die "nginx did not start: $(tail -20 "$WORK/nginx/error.log")"
cmp -s <(curl -s "$N/seats") "$WORK/www/seats.json" || die "nginx does not serve the seat page bytes"

# --- measure ----------------------------------------------------------------
# run NAME URL [SCRIPT] -> writes $WORK/NAME.wrk
run() {
  local name=$1 url=$2 script=${3:-} s=()
  [ -n "$script" ] && s=(-s "$script")
  wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" "${s[@]}" "$url" >/dev/null 2>&1 || true
  say "wrk $name: -t$THREADS -c$CONNS -d$DURATION $url"
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "${s[@]}" "$url" >"$WORK/$name.wrk" 2>&1 \
    || die "wrk $name failed: $(cat "$WORK/$name.wrk")"
  kill -0 "$CPID" 2>/dev/null || die "concertd died during $name: $(tail -20 "$WORK/concertd.err")"
}
run nginx_seats "$N/seats" "$WORK/nginx_seats.lua"
run concertd_seats "$C/" "$WORK/concertd_seats.lua"
run nginx_concerts "$N/concerts"
run concertd_concerts "$C/api/v1/concerts"

# parse FILE -> "rps p50ms p99ms errors"
parse() {
  awk '
    function ms(v) {
      if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
      if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
      if (v ~ /s$/)  return substr(v, 1, length(v) - 1) * 1000
      return v + 0
    }
    /Requests\/sec:/ { rps = $2 }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    /Non-2xx or 3xx responses:/ { err += $NF }
    /Socket errors:/ { gsub(/,/, ""); err += $4 + $6 + $8 + $10 }
    END { printf "%.0f %.3f %.3f %d\n", rps, p50, p99, err }
  ' "$1"
}

read -r NS_RPS NS_P50 NS_P99 NS_ERR < <(parse "$WORK/nginx_seats.wrk")
read -r CS_RPS CS_P50 CS_P99 CS_ERR < <(parse "$WORK/concertd_seats.wrk")
read -r NC_RPS NC_P50 NC_P99 NC_ERR < <(parse "$WORK/nginx_concerts.wrk")
read -r CC_RPS CC_P50 CC_P99 CC_ERR < <(parse "$WORK/concertd_concerts.wrk")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; }

FAILS=0
verdict() { # ok? text
  if [ "$1" = 1 ]; then echo "PASS  $2"; else echo "FAIL  $2"; FAILS=$((FAILS + 1)); fi
}

report() {
  echo "seat_page: $TOTAL_SEATS seats stored, wrk -t$THREADS -c$CONNS -d$DURATION, $(nproc) cores, $(date -u +%FT%TZ)"
  echo "$("$BIN" --version 2>&1 | head -1), $(nginx -v 2>&1 | sed 's/.*: //'), page $MIDDLE?limit=$PAGE"
  echo
  printf '%-34s %10s %9s %9s %7s\n' "target" "req/s" "p50 ms" "p99 ms" "errors"
  printf '%-34s %10s %9s %9s %7s\n' "nginx    seat page bytes" "$NS_RPS" "$NS_P50" "$NS_P99" "$NS_ERR"
  printf '%-34s %10s %9s %9s %7s\n' "concertd seat page (random)" "$CS_RPS" "$CS_P50" "$CS_P99" "$CS_ERR"
  printf '%-34s %10s %9s %9s %7s\n' "nginx    concerts bytes" "$NC_RPS" "$NC_P50" "$NC_P99" "$NC_ERR"
  printf '%-34s %10s %9s %9s %7s\n' "concertd /api/v1/concerts" "$CC_RPS" "$CC_P50" "$CC_P99" "$CC_ERR"
  echo
  echo "ratio concertd/nginx  seat page: req/s $(ratio "$CS_RPS" "$NS_RPS")  p99 $(ratio "$CS_P99" "$NS_P99")"
  echo "ratio concertd/nginx  concerts:  req/s $(ratio "$CC_RPS" "$NC_RPS")  p99 $(ratio "$CC_P99" "$NC_P99")"
  echo
  verdict "$(lt "$CS_P99" 2 && echo 1)" "seat page p99 < 2 ms at $CONNS connections (got $CS_P99 ms)"
  verdict "$(ge "$CC_RPS" "$(awk -v n="$NC_RPS" 'BEGIN { print n / 2 }')" && echo 1)" \
    "catalog req/s >= 0.5 x nginx (got $(ratio "$CC_RPS" "$NC_RPS") x)"
  verdict "$([ "$CS_ERR" -eq 0 ] && [ "$CC_ERR" -eq 0 ] && echo 1)" \
    "concertd answered every request with 2xx (errors: seat page $CS_ERR, concerts $CC_ERR)"
  if [ -n "$SEED_SECS" ]; then
    local note=""
    [ "$TOTAL_SEATS" -eq 10000000 ] || note="; the target is for 10,000,000"
    verdict "$(lt "$SEED_SECS" 60 && echo 1)" "seeding $TOTAL_SEATS seats < 60 s (got $SEED_SECS s$note)"
  else
    echo "----  seeding not timed (reused $DB)"
  fi
}

mkdir -p "$ROOT/bench/out"
OUT="$ROOT/bench/out/seat_page-$(date -u +%Y%m%dT%H%M%SZ).txt"
report >"$OUT"   # not in a pipeline: verdict() counts FAILS in this shell
cat "$OUT"
for f in nginx_seats concertd_seats nginx_concerts concertd_concerts; do
  { echo; echo "== $f"; cat "$WORK/$f.wrk"; } >>"$OUT"
done
say "raw wrk output appended to $OUT"
if [ "$FAILS" -gt 0 ] && [ "${BENCH_STRICT:-0}" = 1 ]; then exit 2; fi
exit 0

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
#   BENCH_PACED_RATE  req/s of the paced seat-page run            [5000]
#   BENCH_PACED_SECS  its duration in seconds                     [10]
#   BENCH_STRICT=1    exit 2 when a target FAILs                 [report only]
#   BENCH_KEEP=1      keep the temp dir (logs, bodies, configs)
#   CONCERTD_BIN      binary to measure        [build/release/concertd, built if needed]
#
# Only processes this script starts are stopped, by PID, on exit.
set -euo pipefail

BENCH_NAME=seat_page
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
CONNS=${BENCH_CONNS:-64}
CONCERTS=${BENCH_CONCERTS:-200}
SESSIONS=${BENCH_SESSIONS:-50}
SEATS=${BENCH_SEATS:-1000}
PAGE=100
PACED_RATE=${BENCH_PACED_RATE:-5000}
PACED_SECS=${BENCH_PACED_SECS:-10}
TOKEN=bench_token_1 # sessions and seats are behind the waiting-room gate

# --- database ---------------------------------------------------------------
DB=${BENCH_DB:-$WORK/bench.db}
SEED_SECS=""
if [ -s "$DB" ]; then
  say "reusing $DB"
else
  say "seeding $((CONCERTS * SESSIONS * SEATS)) seats into $DB ..."
  t0=$(date +%s.%N)
  "$BIN" seed --db "sqlite:$DB" --concerts "$CONCERTS" --sessions-per-concert "$SESSIONS" \
    --seats-per-session "$SEATS" --users 1 >"$WORK/seed.out" 2>"$WORK/seed.err" \
    || die "seed failed: $(tail -5 "$WORK/seed.err")"
  t1=$(date +%s.%N)
  SEED_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
  say "seeded in ${SEED_SECS}s ($(du -h "$DB" | cut -f1))"
fi
# An ACTIVATED token for user 1, valid a day (also on a reused DB; not timed).
"$BIN" seed --db "sqlite:$DB" --concerts 0 --users 1 --active-tokens 'bench_token_{n}' \
  >/dev/null 2>"$WORK/token.err" || die "token seed failed: $(tail -5 "$WORK/token.err")"

# --- concertd ---------------------------------------------------------------
start_concertd "$DB"

mkdir -p "$WORK/www"
chmod 755 "$WORK/www"
fetch "$C/api/v1/concerts" "$WORK/www/concerts.json"

# Every (concert, session) pair, for the random seat-page script; the hot
# page for the reference is a session in the middle of the data.
"$PY" - "$C" "$WORK" "$((SEATS > PAGE ? SEATS - PAGE : 0))" <<'EOF' || die "could not list sessions"
import json, sys, urllib.request
base, work = sys.argv[1], sys.argv[2]
hdr = {"QUEUE-TOKEN": "bench_token_1"}
get = lambda p: json.load(urllib.request.urlopen(urllib.request.Request(base + p, headers=hdr),
                                                 timeout=10))
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
import random
rnd = random.Random(1)
with open(f"{work}/paced_paths", "w") as f:  # for the paced run: random page, random cursor
    for _ in range(200000):
        f.write(f"{rnd.choice(paths)}?limit=100&after={rnd.randint(0, int(sys.argv[3]))}\n")
with open(f"{work}/middle", "w") as f:
    f.write(paths[len(paths) // 2])
with open(f"{work}/total_seats", "w") as f:
    f.write(str(seats))
print(f"{len(concerts)} concerts, {len(paths)} sessions, {seats} seats", file=sys.stderr)
EOF
MIDDLE=$(cat "$WORK/middle")
TOTAL_SEATS=$(cat "$WORK/total_seats")
fetch "$C$MIDDLE?limit=$PAGE" "$WORK/www/seats.json" -H "QUEUE-TOKEN: $TOKEN"
SESSIONS_PATH=${MIDDLE%/sessions/*}/sessions
fetch "$C$SESSIONS_PATH" "$WORK/www/sessions.json" -H "QUEUE-TOKEN: $TOKEN"
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
  return wrk.format("GET", p .. "?limit=$PAGE&after=" .. math.random(0, maxafter),
                    {["QUEUE-TOKEN"] = "$TOKEN"})
end
EOF
} >"$WORK/concertd_seats.lua"
# The warm-up walks every session in order (thread k takes every THREADS-th),
# so each session's seats are loaded into concertd's seat map
# (store/sqlite_seatmap.c) before the measured run, as nginx's file is in
# the page cache; a session's first page costs a load of all its seats.
{
  cat "$WORK/paths.lua"
  cat <<EOF
local counter = 0
setup = function(thread) thread:set("id", counter); counter = counter + 1 end
init = function(args) i = id end
request = function()
  local p = paths[(i % #paths) + 1]
  i = i + $THREADS
  return wrk.format("GET", p .. "?limit=$PAGE", {["QUEUE-TOKEN"] = "$TOKEN"})
end
EOF
} >"$WORK/concertd_warm.lua"
cat >"$WORK/nginx_seats.lua" <<EOF
local maxafter = $MAXAFTER
request = function()
  return wrk.format("GET", "/seats?limit=$PAGE&after=" .. math.random(0, maxafter),
                    {["QUEUE-TOKEN"] = "$TOKEN"})
end
EOF

# --- nginx reference ----------------------------------------------------------
start_nginx "    location = /seats { alias $WORK/www/seats.json; }
    location = /concerts { alias $WORK/www/concerts.json; }
    location = /sessions { alias $WORK/www/sessions.json; }"
wait_http "$N/concerts" 10 || die "nginx did not start: $(tail -20 "$WORK/nginx/error.log")"
cmp -s <(curl -s "$N/seats") "$WORK/www/seats.json" || die "nginx does not serve the seat page bytes"

# --- measure ----------------------------------------------------------------
run() { wrk_run "$1" "$2" "${3:-}" "$CONNS"; }
run nginx_seats "$N/seats" "$WORK/nginx_seats.lua"
wrk_warm "$C/" "$WORK/concertd_warm.lua" "$CONNS"
run concertd_seats "$C/" "$WORK/concertd_seats.lua"
run nginx_concerts "$N/concerts"
run concertd_concerts "$C/api/v1/concerts"
printf 'wrk.headers["QUEUE-TOKEN"] = "%s"\n' "$TOKEN" >"$WORK/token.lua"
run nginx_sessions "$N/sessions" "$WORK/token.lua"
run concertd_sessions "$C$SESSIONS_PATH" "$WORK/token.lua"

# Paced: the same random seat pages at a fixed rate well below saturation
# (concert-load's constant arrival rate, latency from when each request was
# due), against concertd and against nginx. This is the service time a user sees on a busy but
# not overloaded server; the wrk runs above are the saturated ceiling.
[ -x "$LOAD" ] || die "no concert-load at $LOAD"
sed 's|^/api/v1/concerts/[0-9]*/sessions/[0-9]*/seats|/seats|' "$WORK/paced_paths" \
  >"$WORK/paced_paths_nginx"
say "paced: $PACED_RATE req/s over $CONNS connections, $PACED_SECS s, nginx then concertd ..."
paced() { # name base-url paths-file
  "$LOAD" --target "$2" --scenario get --paths "$3" --header "QUEUE-TOKEN: $TOKEN" \
    --rate "$PACED_RATE/s" --vus 1000 --connections "$CONNS" --duration "${PACED_SECS}s" \
    --json "$WORK/$1.json" >"$WORK/$1.out" 2>&1 || die "paced $1 run failed: $(tail "$WORK/$1.out")"
}
paced paced_nginx "$N" "$WORK/paced_paths_nginx"
paced paced_concertd "$C" "$WORK/paced_paths"
kv() { sed -n "s/.*[ ^]$1=\([^ ]*\).*/\1/p" <<<" $2"; }
PN=$(load_kv "$WORK/paced_nginx.json")
PC=$(load_kv "$WORK/paced_concertd.json")

read -r NS_RPS NS_P50 _ NS_P99 NS_ERR < <(wrk_parse "$WORK/nginx_seats.wrk")
read -r CS_RPS CS_P50 _ CS_P99 CS_ERR < <(wrk_parse "$WORK/concertd_seats.wrk")
read -r NC_RPS NC_P50 _ NC_P99 NC_ERR < <(wrk_parse "$WORK/nginx_concerts.wrk")
read -r CC_RPS CC_P50 _ CC_P99 CC_ERR < <(wrk_parse "$WORK/concertd_concerts.wrk")
read -r NSS_RPS NSS_P50 _ NSS_P99 NSS_ERR < <(wrk_parse "$WORK/nginx_sessions.wrk")
read -r CSS_RPS CSS_P50 _ CSS_P99 CSS_ERR < <(wrk_parse "$WORK/concertd_sessions.wrk")

report() {
  echo "seat_page: $TOTAL_SEATS seats stored, wrk -t$THREADS -c$CONNS -d$DURATION, $(nproc) cores, $(date -u +%FT%TZ)"
  echo "$("$BIN" --version 2>&1 | head -1), $(nginx -v 2>&1 | sed 's/.*: //'), page $MIDDLE?limit=$PAGE"
  echo
  printf '%-34s %10s %9s %9s %7s\n' "target" "req/s" "p50 ms" "p99 ms" "errors"
  printf '%-34s %10s %9s %9s %7s\n' "nginx    seat page bytes" "$NS_RPS" "$NS_P50" "$NS_P99" "$NS_ERR"
  printf '%-34s %10s %9s %9s %7s\n' "concertd seat page (random)" "$CS_RPS" "$CS_P50" "$CS_P99" "$CS_ERR"
  printf '%-34s %10s %9s %9s %7s\n' "nginx    concerts bytes" "$NC_RPS" "$NC_P50" "$NC_P99" "$NC_ERR"
  printf '%-34s %10s %9s %9s %7s\n' "concertd /api/v1/concerts" "$CC_RPS" "$CC_P50" "$CC_P99" "$CC_ERR"
  printf '%-34s %10s %9s %9s %7s\n' "nginx    sessions bytes" "$NSS_RPS" "$NSS_P50" "$NSS_P99" "$NSS_ERR"
  printf '%-34s %10s %9s %9s %7s\n' "concertd sessions of a concert" "$CSS_RPS" "$CSS_P50" "$CSS_P99" "$CSS_ERR"
  echo
  echo "ratio concertd/nginx  seat page: req/s $(ratio "$CS_RPS" "$NS_RPS")  p99 $(ratio "$CS_P99" "$NS_P99")"
  echo "ratio concertd/nginx  concerts:  req/s $(ratio "$CC_RPS" "$NC_RPS")  p99 $(ratio "$CC_P99" "$NC_P99")"
  echo "ratio concertd/nginx  sessions:  req/s $(ratio "$CSS_RPS" "$NSS_RPS")  p99 $(ratio "$CSS_P99" "$NSS_P99")"
  echo
  echo "paced seat pages, $PACED_RATE req/s over $CONNS connections for $PACED_SECS s:"
  echo "  nginx:    $PN"
  echo "  concertd: $PC"
  echo
  verdict "$(lt "$CS_P99" 2 && echo 1)" "seat page p99 < 2 ms at $CONNS connections, saturated (got $CS_P99 ms; nginx $NS_P99 ms)"
  verdict "$(lt "$(kv p99_ms "$PC")" 2 && [ "$(kv errors "$PC")" = 0 ] && echo 1)" \
    "seat page p99 < 2 ms at a paced $PACED_RATE req/s (got $(kv p99_ms "$PC") ms, $(kv errors "$PC") errors; nginx $(kv p99_ms "$PN") ms)"
  verdict "$(ge "$CC_RPS" "$(awk -v n="$NC_RPS" 'BEGIN { print n / 2 }')" && echo 1)" \
    "catalog: concert list req/s >= 0.5 x nginx (got $(ratio "$CC_RPS" "$NC_RPS") x)"
  verdict "$(ge "$CSS_RPS" "$(awk -v n="$NSS_RPS" 'BEGIN { print n / 2 }')" && echo 1)" \
    "catalog: sessions list req/s >= 0.5 x nginx (got $(ratio "$CSS_RPS" "$NSS_RPS") x)"
  verdict "$([ "$CS_ERR" -eq 0 ] && [ "$CC_ERR" -eq 0 ] && [ "$CSS_ERR" -eq 0 ] && echo 1)" \
    "concertd answered every request with 2xx (errors: seat page $CS_ERR, concerts $CC_ERR, sessions $CSS_ERR)"
  if [ -n "$SEED_SECS" ]; then
    local note=""
    [ "$TOTAL_SEATS" -eq 10000000 ] || note="; the target is for 10,000,000"
    verdict "$(lt "$SEED_SECS" 60 && echo 1)" "seeding $TOTAL_SEATS seats < 60 s (got $SEED_SECS s$note)"
  else
    echo "----  seeding not timed (reused $DB)"
  fi
}

save_report report "$WORK"/nginx_seats.wrk "$WORK"/concertd_seats.wrk \
  "$WORK"/nginx_concerts.wrk "$WORK"/concertd_concerts.wrk "$WORK"/nginx_sessions.wrk \
  "$WORK"/concertd_sessions.wrk
bench_exit

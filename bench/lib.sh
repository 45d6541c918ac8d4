# lib.sh -- what every bench script shares; sourced, not run.
#
# Provides: say/die, the concertd binary ($BIN, release build unless
# CONCERTD_BIN), a scratch dir ($WORK) removed on exit unless BENCH_KEEP=1,
# processes started with track() stopped by PID on exit, free_port,
# wait_http, fetch, start_concertd, start_nginx (+ nginx_return), wrk_warm,
# wrk_measure, wrk_run, wrk_parse, poll_lua, secs, the number helpers ratio/lt/ge/le,
# verdict (counts $FAILS), save_report and bench_exit; $LOAD (concert-load)
# and load_kv; booking_invariants (PostgreSQL, after a booking run).
# The caller sets BENCH_NAME before sourcing.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=/usr/bin/python3
THREADS=${BENCH_THREADS:-2}
DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-3s}
FAILS=0

say() { printf '%s\n' "$*" >&2; }
die() { say "$BENCH_NAME: $*"; exit 1; }

"$ROOT/scripts/deps" --bench

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
# concert-load (tools/load/), built beside concertd.
LOAD=${CONCERT_LOAD_BIN:-$(dirname "$BIN")/concert-load}

WORK=$(mktemp -d "/tmp/concertd-$BENCH_NAME.XXXXXX")
chmod 755 "$WORK" # nginx workers may run as another user
PIDS=()
track() { PIDS+=("$1"); }
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

fetch() { # url, out-file, [curl args...]: must be a 200
  local url=$1 out=$2 code
  shift 2
  code=$(curl -sS --max-time 10 -o "$out" -w '%{http_code}' "$@" "$url") || die "GET $url failed"
  [ "$code" = 200 ] || die "GET $url -> $code: $(head -c 300 "$out")"
}

# start_concertd DB [serve args...]: BENCH_LIMITS, serve args, then
# BENCH_SERVE_ARGS; sets CPID, CPORT and C (base URL). DB: a SQLite file
# path, or a --db URL. Benches drive each user far faster than a fan, so the
# per-user abuse limits are off unless BENCH_LIMITS says otherwise
# (bench/ratelimit.sh sets it empty: the limits are what it measures).
BENCH_LIMITS=${BENCH_LIMITS---limit-enter-user 0 --limit-hold-user 0 --max-live-holds 0}
start_concertd() {
  local db=$1
  shift
  case $db in *://* | sqlite:*) ;; *) db="sqlite:$db" ;; esac
  CPORT=$(free_port)
  # shellcheck disable=SC2086
  "$BIN" serve --listen "127.0.0.1:$CPORT" --db "$db" --log-level warn $BENCH_LIMITS "$@" \
    ${BENCH_SERVE_ARGS:-} >"$WORK/concertd.out" 2>"$WORK/concertd.err" &
  CPID=$!
  track "$CPID"
  C="http://127.0.0.1:$CPORT"
  wait_http "$C/health/live" 30 || die "concertd did not start: $(tail -20 "$WORK/concertd.err")"
}

# start_nginx LOCATIONS: serves the nginx location blocks given (files under
# $WORK/www) on a free port; sets NPORT and N (base URL).
start_nginx() {
  NPORT=$(free_port)
  mkdir -p "$WORK/nginx"
  cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off;
worker_processes ${NGINX_WORKERS:-2};
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
worker_rlimit_nofile 65536;
events { worker_connections 16384; }
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
$1
  }
}
EOF
  nginx -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" &
  track $!
  N="http://127.0.0.1:$NPORT"
}

# nginx_return PATH STATUS BODY-FILE: a location answering those exact bytes.
nginx_return() {
  local body
  body=$(cat "$3")
  case $body in *"'"* | *\\*) die "body of $1 has a quote or backslash nginx would alter" ;; esac
  printf "    location = %s { return %s '%s'; }\n" "$1" "$2" "$body"
}

# poll_lua TOKENS OUT: a wrk script polling the waiting room
# (GET /api/v1/waiting-queues), each request with the next token of the file
# TOKENS (one a line), round robin from a random start.
poll_lua() {
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

# wrk_warm URL SCRIPT CONNS [script args...]: an unrecorded warm-up run.
# SCRIPT may be "" (plain GETs of URL).
wrk_warm() {
  local url=$1 script=$2 conns=$3 s=()
  shift 3
  [ -n "$script" ] && s=(-s "$script")
  wrk -t"$THREADS" -c"$conns" -d"$WARMUP" "${s[@]}" "$url" -- "$@" >/dev/null 2>&1 || true
}

# proc_ticks PID -> its user + system CPU time in clock ticks (0 once gone)
proc_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# machine_ticks -> "all steal": the machine's CPU ticks so far, and the
# ticks the hypervisor gave to other guests (steal)
machine_ticks() { awk '$1 == "cpu" { t = 0; for (i = 2; i <= NF; i++) t += $i; print t, $9 }' /proc/stat; }
# steal_pct BEFORE AFTER (two machine_ticks) -> the % of the CPU stolen between
steal_pct() {
  awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " ")
    printf "%.1f", (y[1] > x[1] ? 100 * (y[2] - x[2]) / (y[1] - x[1]) : 0) }'
}

# wrk_measure NAME URL SCRIPT CONNS [script args...] -> $WORK/NAME.wrk, and
# $WORK/NAME.cpu: "steal_pct cpu_us_per_request" for the run, the second
# of concertd (CPID) when URL is on it ($C), else "n/a". Throughput and
# latency move with the neighbours of this shared machine; CPU per
# request much less, and steal says how much the neighbours took.
wrk_measure() {
  local name=$1 url=$2 script=$3 conns=$4 s=() m0 m1 p0=0 p1 pid=
  shift 4
  [ -n "$script" ] && s=(-s "$script")
  [ -n "${C:-}" ] && case $url in "$C" | "$C"/*) pid=${CPID:-} ;; esac
  say "wrk $name: -t$THREADS -c$conns -d$DURATION $url"
  m0=$(machine_ticks)
  [ -n "$pid" ] && p0=$(proc_ticks "$pid")
  wrk -t"$THREADS" -c"$conns" -d"$DURATION" --latency "${s[@]}" "$url" -- "$@" \
    >"$WORK/$name.wrk" 2>&1 || die "wrk $name failed: $(cat "$WORK/$name.wrk")"
  m1=$(machine_ticks)
  [ -n "$pid" ] && p1=$(proc_ticks "$pid")
  if [ -n "${CPID:-}" ] && ! kill -0 "$CPID" 2>/dev/null; then
    die "concertd died during $name: $(tail -20 "$WORK/concertd.err")"
  fi
  local rps
  rps=$(awk '/Requests\/sec:/ { print $2 }' "$WORK/$name.wrk")
  awk -v steal="$(steal_pct "$m0" "$m1")" -v p0="$p0" -v p1="${p1:-}" -v rps="${rps:-0}" \
    -v secs="$(secs "$DURATION")" -v hz="$(getconf CLK_TCK)" 'BEGIN {
      cpu = (p1 != "" && rps > 0) ? sprintf("%.1f", (p1 - p0) / hz * 1e6 / (rps * secs)) : "n/a"
      print steal, cpu
    }' >"$WORK/$name.cpu"
}

# cpu_line NAME -> "steal X %, concertd CPU per request Y us" for a report
cpu_line() {
  local steal cpu
  read -r steal cpu <"$WORK/$1.cpu"
  echo "machine steal during the run: $steal %; concertd CPU per request: $cpu us"
}

# wrk_run NAME URL SCRIPT CONNS [script args...]: warm, then measure.
wrk_run() {
  local name=$1
  shift
  wrk_warm "$@"
  wrk_measure "$name" "$@"
}

# wrk_parse FILE -> "rps p50 p95 p99 errors" (ms). A script's done() may
# print a line "LATENCY_MS p50=.. p95=.. p99=.."; without one, p50 and p99
# come from wrk's --latency table and p95 is n/a.
wrk_parse() {
  awk '
    function ms(v) {
      if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
      if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
      if (v ~ /s$/)  return substr(v, 1, length(v) - 1) * 1000
      return v + 0
    }
    /Requests\/sec:/ { rps = $2 }
    $1 == "50%" { p50 = sprintf("%.3f", ms($2)) }
    $1 == "99%" { p99 = sprintf("%.3f", ms($2)) }
    /^LATENCY_MS/ { for (i = 2; i <= NF; i++) { split($i, kv, "="); lat[kv[1]] = kv[2] } }
    /Non-2xx or 3xx responses:/ { err += $NF }
    /Socket errors:/ { gsub(/,/, ""); err += $4 + $6 + $8 + $10 }
    END {
      if ("p50" in lat) p50 = lat["p50"]
      if ("p99" in lat) p99 = lat["p99"]
      p95 = ("p95" in lat) ? lat["p95"] : "n/a"
      printf "%.0f %s %s %s %d\n", rps, p50, p95, p99, err
    }
  ' "$1"
}

# load_kv JSON -> one line of key=value figures from a concert-load --json
# file: requests rps errors (failed requests) dropped (arrival-rate
# iterations that found no free user) iterations p50_ms p95_ms p99_ms max_ms.
load_kv() {
  "$PY" - "$1" <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1]))
m, l = d["metrics"], d["metrics"]["http_req_duration"]
print(f'requests={m["http_reqs"]["count"]} rps={m["http_reqs"]["rate"]:.0f} '
      f'errors={m["http_req_failed"]["failed"]} dropped={m["iterations"]["dropped"]} '
      f'iterations={m["iterations"]["count"]} p50_ms={l["med"]:.3f} p95_ms={l["p95"]:.3f} '
      f'p99_ms={l["p99"]:.3f} max_ms={l["max"]:.3f}')
PYEOF
}

# secs DURATION: wrk's "10s" / "2m" in seconds.
secs() { awk -v d="$1" 'BEGIN { n = d + 0; if (d ~ /m$/) n *= 60; print n }'; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }

verdict() { # ok? text
  if [ "$1" = 1 ]; then echo "PASS  $2"; else echo "FAIL  $2"; FAILS=$((FAILS + 1)); fi
}

# save_report FUNCTION [RAW FILES...]: runs the report function into
# bench/out/NAME-TIME.txt (in this shell, so verdict() counts), prints it and
# appends the raw files.
save_report() {
  local fn=$1 f out
  shift
  mkdir -p "$ROOT/bench/out"
  out="$ROOT/bench/out/$BENCH_NAME-$(date -u +%Y%m%dT%H%M%SZ).txt"
  "$fn" >"$out"
  cat "$out"
  for f in "$@"; do
    { echo; echo "== $(basename "$f")"; cat "$f"; } >>"$out"
  done
  say "raw output appended to $out"
}

# bench_exit: 2 when a target FAILed and BENCH_STRICT=1, else 0.
bench_exit() {
  if [ "$FAILS" -gt 0 ] && [ "${BENCH_STRICT:-0}" = 1 ]; then exit 2; fi
  exit 0
}

# booking_invariants PSQL...: on a PostgreSQL database after a booking run,
# prints "DOUBLE PAID_TWICE LEDGER_BAD SOLD": seats in two live reservations
# (or sold/held without one), reservations paid twice, users whose balance
# is not their ledger's sum, seats sold. PSQL is the psql command to run.
booking_invariants() {
  "$@" -tA -F ' ' -c "SELECT
  (SELECT count(*) FROM (SELECT rs.seat_id FROM reservation_seats rs JOIN reservations r
     ON r.id = rs.reservation_id WHERE r.status IN ('HELD', 'CONFIRMED')
     GROUP BY rs.seat_id HAVING count(*) > 1) d)
  + (SELECT count(*) FROM seats s LEFT JOIN reservations r ON r.id = s.reservation_id
     WHERE s.status <> 0 AND (r.id IS NULL OR r.status NOT IN ('HELD', 'CONFIRMED'))),
  (SELECT count(*) FROM (SELECT reservation_id FROM payments WHERE status = 'COMPLETED'
     GROUP BY reservation_id HAVING count(*) > 1) p),
  (SELECT count(*) FROM users u WHERE balance <> (SELECT coalesce(sum(amount), 0)
     FROM balance_ledger WHERE user_id = u.id)),
  (SELECT count(*) FROM seats WHERE status = 2)"
}

# booking_compare REF_LABEL REF_WRK LABEL WRK NAME: the two wrk runs of a
# booking comparison as a table, their ratio, and the verdicts every such
# bench gives: NAME >= 0.5 x the reference, no double booking, balances equal
# to their ledgers ($DOUBLE $PAID_TWICE $LEDGER_BAD from booking_invariants),
# no errors.
booking_compare() {
  local r_rps r_p50 r_p95 r_p99 r_err rps p50 p95 p99 err
  read -r r_rps r_p50 r_p95 r_p99 r_err < <(wrk_parse "$2")
  read -r rps p50 p95 p99 err < <(wrk_parse "$4")
  printf '%-34s %10s %9s %9s %9s %7s\n' "target" "req/s" "p50 ms" "p95 ms" "p99 ms" "errors"
  printf '%-34s %10s %9s %9s %9s %7s\n' "$1" "$r_rps" "$r_p50" "$r_p95" "$r_p99" "$r_err"
  printf '%-34s %10s %9s %9s %9s %7s\n' "$3" "$rps" "$p50" "$p95" "$p99" "$err"
  echo
  echo "ratio $5: req/s $(ratio "$rps" "$r_rps")  p95 $(ratio "$p95" "$r_p95")  p99 $(ratio "$p99" "$r_p99")"
  echo
  verdict "$(ge "$(ratio "$rps" "$r_rps")" 0.5 && echo 1)" \
    "booking flow $5 >= 0.5 (got $(ratio "$rps" "$r_rps"))"
  verdict "$([ "$DOUBLE" -eq 0 ] && [ "$PAID_TWICE" -eq 0 ] && echo 1)" \
    "0 double bookings (seats in two live reservations: $DOUBLE, paid twice: $PAID_TWICE)"
  verdict "$([ "$LEDGER_BAD" -eq 0 ] && echo 1)" "every balance equals its ledger ($LEDGER_BAD users off)"
  verdict "$([ "$err" -eq 0 ] && echo 1)" "$3 answered every request with 2xx ($err errors)"
}

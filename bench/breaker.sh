#!/usr/bin/env bash
# breaker.sh -- how fast an open circuit breaker answers card payments
# (DESIGN.md / the gateway issue: "< 5 ms p99 without touching the PG"), and
# how soon card payments recover once the gateway is back.
#
#   bench/breaker.sh                  1,000 refused payments, sequential
#   BENCH_N=5000 bench/breaker.sh
#
# Starts mockpg and concertd (--pg-url, --pg-breaker-open 5s), takes mockpg
# down, opens the breaker with failing card payments, then times BENCH_N
# card payments one after another on one keep-alive connection: each must
# be 503 GATEWAY_UNAVAILABLE with Retry-After, and mockpg must see none of
# them. Then brings mockpg back and times how long until a card payment
# is approved. Only processes this script starts are stopped, by PID.
set -euo pipefail

BENCH_NAME=breaker
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
N=${BENCH_N:-1000}
MOCKPG=$(dirname "$BIN")/mockpg
[ -x "$MOCKPG" ] || die "no mockpg next to $BIN"

DB=$WORK/breaker.db
"$BIN" seed --db "sqlite:$DB" --users 30 --balance 0 --active-tokens 'queue_token_{n}' \
  >/dev/null 2>"$WORK/seed.err" || die "seed failed: $(cat "$WORK/seed.err")"
MPORT=$(free_port)
"$MOCKPG" --listen "127.0.0.1:$MPORT" >"$WORK/mockpg.out" 2>&1 &
track $!
wait_http "http://127.0.0.1:$MPORT/admin/charges" 10 || die "mockpg did not start"
start_concertd "$DB" --pg-url "http://127.0.0.1:$MPORT" --pg-breaker-open 5s --pg-timeout 1s

"$PY" - "$C" "http://127.0.0.1:$MPORT" "$N" >"$WORK/result.txt" <<'PYEOF' || die "measure failed: $(cat "$WORK/result.txt")"
import http.client, json, sys, time, urllib.parse
base, pg, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
u = urllib.parse.urlparse(base)
c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
def req(conn, method, path, body=None, headers=None):
    h = {"Content-Type": "application/json", **(headers or {})}
    conn.request(method, path, json.dumps(body) if body is not None else None, h)
    r = conn.getresponse()
    return r.status, r.getheader("Retry-After"), r.read()
pu = urllib.parse.urlparse(pg)
m = http.client.HTTPConnection(pu.hostname, pu.port, timeout=10)
def hold(user, seat):
    tok = {"QUEUE-TOKEN": f"queue_token_{user}"}
    st, _, b = req(c, "POST", "/api/v1/concerts/1/sessions/1/reservations",
                   {"userId": user, "seatIds": [seat]}, tok)
    assert st == 201, (st, b)
    return tok, {"userId": user, "reservationId": json.loads(b)["reservationId"], "method": "card"}
assert req(m, "PUT", "/admin/faults", {"down": True})[0] == 200
# Each failing attempt needs its own reservation (a PENDING one is looked up,
# not charged again): users 2.. each hold one seat and try to pay by card.
opened = None
for i in range(25):
    t, b_ = hold(2 + i, 2 + i)
    st, ra, b = req(c, "POST", "/api/v1/payments", b_, t)
    if st == 503 and ra:
        opened = i
        break
assert opened is not None, "the breaker did not open"
tok, pay = hold(1, 1)
before = json.loads(req(m, "GET", "/admin/stats")[2])
lat = []
for i in range(n):
    t = time.perf_counter()
    st, ra, b = req(c, "POST", "/api/v1/payments", pay, tok)
    lat.append((time.perf_counter() - t) * 1000)
    assert st == 503 and ra, (st, b)
after = json.loads(req(m, "GET", "/admin/stats")[2])
lat.sort()
p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
assert req(m, "PUT", "/admin/faults", {"down": False})[0] == 200
t0 = time.monotonic()
while True:
    st, ra, b = req(c, "POST", "/api/v1/payments", pay, tok)
    if st == 201:
        break
    assert time.monotonic() - t0 < 30, (st, b)
    time.sleep(0.05)
rec = time.monotonic() - t0
print(f"opened_after={opened + 1} refused={n} p50_ms={p(0.5):.3f} p99_ms={p(0.99):.3f} max_ms={lat[-1]:.3f} "
      f"gateway_requests_during={sum(after.values()) - sum(before.values())} recovered_s={rec:.2f}")
PYEOF
RESULT=$(cat "$WORK/result.txt")
kv() { sed -n "s/.*[ ^]$1=\([^ ]*\).*/\1/p" <<<" $RESULT"; }

report() {
  echo "breaker: $N card payments while the breaker is open, one connection, $(nproc) cores, $(date -u +%FT%TZ)"
  echo "$RESULT"
  echo
  verdict "$(lt "$(kv p99_ms)" 5 && echo 1)" "open breaker answers in < 5 ms p99 (got $(kv p99_ms) ms)"
  verdict "$([ "$(kv gateway_requests_during)" = 0 ] && echo 1)" \
    "the gateway saw none of them (got $(kv gateway_requests_during))"
  verdict "$(le "$(kv recovered_s)" 5 && echo 1)" \
    "card payments recover within one open interval (5 s) of the gateway coming back (got $(kv recovered_s) s)"
}
save_report report "$WORK/result.txt"
bench_exit

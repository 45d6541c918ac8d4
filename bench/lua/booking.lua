-- booking.lua -- the booking flow for wrk: sessions -> seats -> hold -> pay.
--
-- wrk keeps one Lua state per thread, not per connection, so each thread
-- walks its users through the four steps in turn over its connections: a
-- hold's answer (userId, reservationId) is queued and the next "pay" step
-- pays it, as that user. Each thread holds its own seats (ids k+1, k+1+T,
-- k+1+2T, ... for thread k of T), so no two users of a run ever want the same seat:
-- every refusal is an error. The mix is one request of each step per flow.
--
-- args: mode (concertd|nginx) threads seats_per_session sessions_per_concert users
--       first_seat (seats first_seat+1, ... are this run's; runs on one database
--       must use disjoint ranges)
local counter, threads = 0, {}

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  mode, nthreads = args[1], tonumber(args[2])
  per_session, per_concert, nusers = tonumber(args[3]), tonumber(args[4]), tonumber(args[5])
  seat = tonumber(args[6] or "0") + id + 1 -- the next seat this thread holds
  user_i, step = 0, 0
  queue, qhead, qtail = {}, 1, 0
  holds_ok, pays_ok, bad = 0, 0, 0
end

local function headers(uid)
  return {["Content-Type"] = "application/json", ["QUEUE-TOKEN"] = "queue_token_" .. uid,
          ["X-User-Id"] = tostring(uid)}
end

local function where(s) -- seat id -> concert, session, seat number (seed order)
  local sid = math.floor((s - 1) / per_session) + 1
  return math.floor((sid - 1) / per_concert) + 1, sid, (s - 1) % per_session + 1
end

local function path(concertd, stub)
  return mode == "nginx" and stub or concertd
end

function request()
  step = step % 4 + 1
  if step == 4 and qhead > qtail then step = 3 end -- nothing held yet: hold first
  local cid, sid, num = where(seat)
  if step == 1 then
    return wrk.format("GET", path("/api/v1/concerts/" .. cid .. "/sessions", "/sessions"),
                      headers(id + 1))
  elseif step == 2 then
    return wrk.format("GET", path("/api/v1/concerts/" .. cid .. "/sessions/" .. sid ..
                                  "/seats?limit=20&after=" .. (num - 1), "/seats"), headers(id + 1))
  elseif step == 3 then
    local uid = id + 1 + nthreads * (user_i % math.floor(nusers / nthreads))
    user_i = user_i + 1
    local s = seat
    seat = seat + nthreads
    return wrk.format("POST", path("/api/v1/concerts/" .. cid .. "/sessions/" .. sid ..
                                   "/reservations", "/hold"), headers(uid),
                      '{"userId":' .. uid .. ',"seatIds":[' .. s .. ']}')
  end
  local e = queue[qhead]
  queue[qhead], qhead = nil, qhead + 1
  return wrk.format("POST", path("/api/v1/payments", "/pay"), headers(e[1]),
                    '{"userId":' .. e[1] .. ',"reservationId":' .. e[2] .. '}')
end

function response(status, hdrs, body)
  if status >= 300 then
    bad = bad + 1
  elseif body:find('"status":"HELD"', 1, true) then
    holds_ok = holds_ok + 1
    qtail = qtail + 1
    queue[qtail] = {body:match('"userId":(%d+)'), body:match('"reservationId":(%d+)')}
  elseif body:find('"paymentId"', 1, true) then
    pays_ok = pays_ok + 1
  end
end

function done(summary, latency, requests)
  local h, p, b = 0, 0, 0
  for _, t in ipairs(threads) do
    h, p, b = h + t:get("holds_ok"), p + t:get("pays_ok"), b + t:get("bad")
  end
  io.write(string.format("LATENCY_MS p50=%.3f p95=%.3f p99=%.3f\n", latency:percentile(50) / 1000,
                         latency:percentile(95) / 1000, latency:percentile(99) / 1000))
  io.write(string.format("FLOW holds=%d payments=%d refused=%d\n", h, p, b))
end

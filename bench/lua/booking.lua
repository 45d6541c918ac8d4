-- booking.lua -- the booking flow for wrk: sessions -> seats -> hold -> pay,
-- with the waiting room around it: every user enters the line and polls
-- until ACTIVATED before booking, and enters again after paying (paying
-- expires the payer's token, DESIGN.md 3), as every fan who wants another
-- seat must.
--
-- wrk keeps one Lua state per thread, not per connection. Users are split
-- between threads (user u belongs to thread (u-1) mod T) and each thread
-- keeps its users' tokens. Each request() picks the next thing to do:
--   1. enter the line for a user who needs a token (POST /waiting-queues);
--   2. every other request, poll a user whose token is not ACTIVATED yet;
--   3. else the next step of the flow: sessions, seats and a hold as the
--      next user who holds an ACTIVATED token and no unpaid hold, then the
--      payment of the oldest unpaid hold; when no user is free for a new
--      hold, the payment of the oldest one. (Before, the thread then only
--      asked for the stats, and once every user of a thread had a hold out
--      it never paid again: the run measured the stats route.)
-- The browsing steps (sessions, seats) carry the token of a browser user
-- that never pays (user users+2+thread): responses come back in any order
-- over wrk's connections, and a browse of a user whose payment lands first
-- would meet a token that payment just expired. The gate costs the same.
-- Against nginx (the same bytes, no state) request() plays the server's
-- part: entering admits at once, a hold succeeds, a payment needs a new entry.
-- Each thread holds its own seats (ids k+1, k+1+T, ... for thread k of T),
-- so no two users of a run want the same seat: every refusal is an error.
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
  mine = math.floor(nusers / nthreads)      -- users id+1, id+1+T, ...
  user_i, step, calls = 0, 0, 0
  queue, qhead, qtail = {}, 1, 0            -- holds to pay: {uid, rid}
  holds_ok, pays_ok, enters_ok, polls_ok, bad = 0, 0, 0, 0, 0
  tokens, pending, holding = {}, {}, {}     -- uid -> ACTIVATED token / token in line / true
  enter, polling = {}, {}                   -- users to enter / to poll
  for k = 0, mine - 1 do table.insert(enter, id + 1 + nthreads * k) end
  browser = {["QUEUE-TOKEN"] = "queue_token_" .. (nusers + 2 + id)}
end

local JSON = {["Content-Type"] = "application/json"}

local function as(uid)
  return {["Content-Type"] = "application/json", ["QUEUE-TOKEN"] = tokens[uid]}
end

local function where(s) -- seat id -> concert, session, seat number (seed order)
  local sid = math.floor((s - 1) / per_session) + 1
  return math.floor((sid - 1) / per_concert) + 1, sid, (s - 1) % per_session + 1
end

local function path(concertd, stub)
  return mode == "nginx" and stub or concertd
end

-- The next user with an ACTIVATED token and no unpaid hold, or nil.
local function next_user()
  for _ = 1, mine do
    local uid = id + 1 + nthreads * (user_i % mine)
    user_i = user_i + 1
    if tokens[uid] and not holding[uid] then return uid end
  end
  return nil
end

function request()
  calls = calls + 1
  if #enter > 0 then
    local uid = table.remove(enter)
    if mode == "nginx" then tokens[uid] = "stub" end -- nginx: admitted at once
    return wrk.format("POST", path("/api/v1/waiting-queues", "/enter"), JSON,
                      '{"userId":' .. uid .. '}')
  end
  if #polling > 0 and calls % 2 == 0 then
    local uid = table.remove(polling, 1)
    return wrk.format("GET", path("/api/v1/waiting-queues", "/poll"),
                      {["QUEUE-TOKEN"] = pending[uid]})
  end
  step = step % 4 + 1
  if step == 4 and qhead > qtail then step = 1 end -- nothing to pay yet
  if step == 1 then
    cur = next_user()
    if not cur and qhead <= qtail then
      step = 4 -- everyone is in line or has a hold out: pay the oldest hold
    elseif not cur then -- everyone is in line or waits for a hold: look at the line
      step = 0
      return wrk.format("GET", path("/api/v1/waiting-queues/stats", "/stats"))
    end
  end
  local cid, sid, num = where(seat)
  if step == 1 then
    return wrk.format("GET", path("/api/v1/concerts/" .. cid .. "/sessions", "/sessions"), browser)
  elseif step == 2 then
    return wrk.format("GET", path("/api/v1/concerts/" .. cid .. "/sessions/" .. sid ..
                                  "/seats?limit=20&after=" .. (num - 1), "/seats"), browser)
  elseif step == 3 then
    local s = seat
    seat = seat + nthreads
    holding[cur] = true
    if mode == "nginx" then -- nginx's answers say nothing: book as if they did
      qtail = qtail + 1
      queue[qtail] = {cur, 1}
    end
    return wrk.format("POST", path("/api/v1/concerts/" .. cid .. "/sessions/" .. sid ..
                                   "/reservations", "/hold"), as(cur),
                      '{"userId":' .. cur .. ',"seatIds":[' .. s .. ']}')
  end
  local e = queue[qhead]
  queue[qhead], qhead = nil, qhead + 1
  if mode == "nginx" then
    tokens[e[1]], holding[e[1]] = nil, nil
    table.insert(enter, e[1])
  end
  return wrk.format("POST", path("/api/v1/payments", "/pay"), as(e[1]),
                    '{"userId":' .. e[1] .. ',"reservationId":' .. e[2] .. '}')
end

function response(status, hdrs, body)
  if status >= 300 then
    bad = bad + 1
    return
  end
  if mode == "nginx" then -- the same bytes every time: request() kept the state
    if body:find('"paymentId"', 1, true) then pays_ok = pays_ok + 1 end
    return
  end
  local uid = tonumber(body:match('"userId":(%d+)'))
  if body:find('"status":"HELD"', 1, true) then
    holds_ok = holds_ok + 1
    qtail = qtail + 1
    queue[qtail] = {uid, body:match('"reservationId":(%d+)')}
  elseif body:find('"paymentId"', 1, true) then
    pays_ok = pays_ok + 1
    tokens[uid], holding[uid] = nil, nil -- paying expired it: back in line
    table.insert(enter, uid)
  elseif body:find('"token"', 1, true) then
    local tok = body:match('"token":"([^"]+)"')
    if body:find('"status":"ACTIVATED"', 1, true) then
      tokens[uid], pending[uid] = tok, nil
    else
      pending[uid] = tok
      table.insert(polling, uid)
    end
    if body:find('"activeUntil"', 1, true) then polls_ok = polls_ok + 1 else enters_ok = enters_ok + 1 end
  end
end

function done(summary, latency, requests)
  local h, p, e, q, b = 0, 0, 0, 0, 0
  for _, t in ipairs(threads) do
    h, p, b = h + t:get("holds_ok"), p + t:get("pays_ok"), b + t:get("bad")
    e, q = e + t:get("enters_ok"), q + t:get("polls_ok")
  end
  io.write(string.format("LATENCY_MS p50=%.3f p95=%.3f p99=%.3f\n", latency:percentile(50) / 1000,
                         latency:percentile(95) / 1000, latency:percentile(99) / 1000))
  io.write(string.format("FLOW holds=%d payments=%d enters=%d polls=%d refused=%d\n", h, p, e, q, b))
end

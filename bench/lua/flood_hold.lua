-- flood_hold.lua -- one user (one address) trying to hold seats as fast as
-- wrk can send: POST .../reservations for user 1 with its seeded token,
-- cycling over the seats of session 1. For bench/ratelimit.sh.
-- Each connection waits delay_ms between its requests (wrk's delay()), so
-- the flood has a rate of its own instead of speeding up as the server
-- answers faster: an attacker's rate is set by the attacker.
-- args: token (QUEUE-TOKEN of user 1), seats (how many seats to cycle over),
--       delay_ms (per connection; 0 = as fast as wrk can)
local token, seats, delay_ms, i = "queue_token_1", 50, 0, 0

function init(args)
  token = args[1] or token
  seats = tonumber(args[2] or seats)
  delay_ms = tonumber(args[3] or delay_ms)
end

function delay()
  return delay_ms
end

function request()
  i = i + 1
  local body = '{"userId":1,"seatIds":[' .. (i % seats) + 1 .. ']}'
  return wrk.format("POST", "/api/v1/concerts/1/sessions/1/reservations",
    { ["Content-Type"] = "application/json", ["QUEUE-TOKEN"] = token }, body)
end

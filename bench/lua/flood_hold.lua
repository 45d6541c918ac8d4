-- flood_hold.lua -- one user (one address) trying to hold seats as fast as
-- wrk can send: POST .../reservations for user 1 with its seeded token,
-- cycling over the seats of session 1. For bench/ratelimit.sh.
-- args: token (QUEUE-TOKEN of user 1), seats (how many seats to cycle over)
local token, seats, i = "queue_token_1", 50, 0

function init(args)
  token = args[1] or token
  seats = tonumber(args[2] or seats)
end

function request()
  i = i + 1
  local body = '{"userId":1,"seatIds":[' .. (i % seats) + 1 .. ']}'
  return wrk.format("POST", "/api/v1/concerts/1/sessions/1/reservations",
    { ["Content-Type"] = "application/json", ["QUEUE-TOKEN"] = token }, body)
end

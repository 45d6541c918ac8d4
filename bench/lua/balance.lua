-- balance.lua -- balance charge + lookup for wrk: every other request
-- charges 1000 won to a random user, the others read a random user's
-- balance. args: mode (concertd|nginx) users
local counter, threads = 0, {}

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  mode, nusers = args[1], tonumber(args[2])
  math.randomseed(os.time() * 1000 + id)
  n, charges, bad = 0, 0, 0
end

function request()
  n = n + 1
  local uid = math.random(nusers)
  if n % 2 == 1 then
    charges = charges + 1
    return wrk.format("POST", mode == "nginx" and "/charge" or
                      "/api/v1/users/" .. uid .. "/balance/charge",
                      {["Content-Type"] = "application/json"}, '{"amount":1000}')
  end
  return wrk.format("GET", mode == "nginx" and "/balance" or "/api/v1/users/" .. uid .. "/balance")
end

function response(status, hdrs, body)
  if status >= 300 then bad = bad + 1 end
end

function done(summary, latency, requests)
  local c, b = 0, 0
  for _, t in ipairs(threads) do c, b = c + t:get("charges"), b + t:get("bad") end
  io.write(string.format("LATENCY_MS p50=%.3f p95=%.3f p99=%.3f\n", latency:percentile(50) / 1000,
                         latency:percentile(95) / 1000, latency:percentile(99) / 1000))
  io.write(string.format("CHARGES sent=%d refused=%d\n", c, b))
end

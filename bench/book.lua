-- wrk script: POST bookings with a user JWT to random facilities.
-- Usage: TOKEN=<jwt> FACILITIES=20 HOLD=1 wrk -t2 -c64 -d20s -s bench/book.lua http://127.0.0.1:8080
-- UNIQUE=1: every booking a plate of its own (for bookings that stay held:
-- a random plate may already hold a spot in that facility, a 409).
local token = os.getenv("TOKEN")
local facilities = tonumber(os.getenv("FACILITIES") or "20")
local prefix = os.getenv("PREFIX") or "city-"
local hold = tonumber(os.getenv("HOLD") or "1")
local unique = os.getenv("UNIQUE") == "1"
local counter = 0
local sent = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end

function init(args)
  math.randomseed(os.time() + id * 7919)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. token
end

function request()
  local f = math.random(1, facilities)
  local plate
  if unique then
    sent = sent + 1
    plate = string.format("W%d-%d", id, sent)
  else
    plate = string.format("WRK-%05d", math.random(0, 99999))
  end
  local body = string.format('{"plate":"%s","hold_seconds":%d}', plate, hold)
  return wrk.format(nil, string.format("/v1/facilities/%s%02d/bookings", prefix, f), nil, body)
end

function done(summary, latency, requests)
  io.write(string.format("p50=%.2fms p90=%.2fms p99=%.2fms p99.9=%.2fms max=%.2fms\n",
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency:percentile(99.9) / 1000, latency.max / 1000))
end

-- Open-loop POST /predict load for wrk, one connection per thread (-t N -c N), so each thread's
-- request() and response() alternate and every answer's latency can be timed by status.
-- args: image file, requests per second per thread (0: back to back), expected label, out prefix.
-- Each thread writes "status latency_s retry_after correct sent_at_s" lines to <prefix>-<thread>.txt.
local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } imgclf_timespec;
  int clock_gettime(int clk, imgclf_timespec *ts);
]]
local ts = ffi.new("imgclf_timespec")
local function now()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local threads, counter = {}, 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

local req, interval, label, out, sent_at, next_at

function init(args)
  local f = assert(io.open(args[1], "rb"))
  local image = f:read("*all")
  f:close()
  local rate = tonumber(args[2])
  interval = rate > 0 and 1 / rate or 0
  label = '"label"%s*:%s*"' .. args[3]:gsub("%p", "%%%0") .. '"'
  out = assert(io.open(args[4] .. "-" .. id .. ".txt", "w"))
  out:setvbuf("line")
  req = wrk.format("POST", "/predict", { ["Content-Type"] = "image/jpeg" }, image)
  -- threads start spread over one interval, not all at once
  next_at = now() + interval * math.random()
end

function delay()
  if interval == 0 then return 0 end
  local t = now()
  -- a slot missed while this connection waited for an answer is skipped, not sent late in a burst:
  -- the offered rate that was really sent is what the report shows
  next_at = math.max(next_at + interval, t)
  return math.floor((next_at - t) * 1000)
end

function request()
  sent_at = now()
  return req
end

function response(status, headers, body)
  local latency = now() - sent_at
  local retry = (headers["retry-after"] or headers["Retry-After"]) and 1 or 0
  local correct = (status == 200 and string.find(body, label)) and 1 or 0
  out:write(string.format("%d %.6f %d %d %.6f\n", status, latency, retry, correct, sent_at))
end

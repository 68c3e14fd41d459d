-- Open-loop POST /predict load for wrk (-t threads, -c connections spread over them).
-- Each request carries its own X-Request-ID, which imgclf echoes on every answer (429s included), so
-- every answer's latency is timed from its own send even with many connections per thread: the
-- load generator then needs only a few threads, and its own scheduling stays out of the figures.
-- args: image file, requests per second per thread (0: back to back), expected label, out prefix.
-- Each thread writes "status latency_s retry_after correct sent_at_s" lines to <prefix>-<thread>.txt
-- (latency -1 when an answer carried no known id).
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

local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end

local image, interval, label, out, next_at
local sent, seq = {}, 0

function init(args)
  local f = assert(io.open(args[1], "rb"))
  image = f:read("*all")
  f:close()
  local rate = tonumber(args[2])
  interval = rate > 0 and 1 / rate or 0
  label = '"label"%s*:%s*"' .. args[3]:gsub("%p", "%%%0") .. '"'
  out = assert(io.open(args[4] .. "-" .. id .. ".txt", "w"))
  out:setvbuf("full")
  -- threads start spread over one interval, not all at once
  next_at = now() + interval * math.random()
end

function delay()
  if interval == 0 then return 0 end
  local t = now()
  -- one schedule per thread, shared by its connections: each send takes the next free slot, and a
  -- slot missed while every connection waited for an answer is skipped, not sent late in a burst
  -- (the offered rate that was really sent is what the report shows)
  next_at = math.max(next_at + interval, t)
  return math.floor((next_at - t) * 1000)
end

function request()
  seq = seq + 1
  local rid = id .. "-" .. seq
  sent[rid] = now()
  return wrk.format("POST", "/predict", { ["Content-Type"] = "image/jpeg", ["X-Request-ID"] = rid }, image)
end

function response(status, headers, body)
  local t = now()
  local rid = headers["x-request-id"] or headers["X-Request-ID"]
  local at = rid and sent[rid]
  if at then sent[rid] = nil end
  local retry = (headers["retry-after"] or headers["Retry-After"]) and 1 or 0
  local correct = (status == 200 and string.find(body, label)) and 1 or 0
  out:write(string.format("%d %.6f %d %d %.6f\n", status, at and (t - at) or -1, retry, correct, at or t))
end


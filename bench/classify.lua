-- wrk script for `make bench`: POSTs a JPEG file as the raw request body to the URL given to wrk
-- (e.g. http://127.0.0.1:PORT/v1/classify?model=alexnet), sums the server's per-stage timings_ms
-- over every 200 response (and the size of the batch each ran in), and prints one line "WRK_JSON {...}" at the end for bench/run_wrk.sh.
--
-- usage: wrk -t1 -c16 -d10s --timeout 30s -s classify.lua URL -- FILE.jpg

local STAGES = { "receive", "decode", "preprocess", "queue", "inference", "postprocess", "total" }

-- Per-thread tallies (globals: done() reads them through thread:get).
stage_sums = {}
n_timed = 0
n_ok = 0
n_not_2xx = 0
n_status = {}
batch_sum = 0 -- requests of the batch each 200 response ran in (1 when not batched)
decode_scale = nil -- the server's JPEG DCT scaling of this image, e.g. "1/8"

function init(args)
   local path = args[1]
   if not path then
      error("classify.lua: pass the JPEG file after --")
   end
   local f = assert(io.open(path, "rb"))
   wrk.method = "POST"
   wrk.body = f:read("*a")
   f:close()
   wrk.headers["Content-Type"] = "image/jpeg"
end

function response(status, headers, body)
   n_status[status] = (n_status[status] or 0) + 1
   if status < 200 or status > 299 then
      n_not_2xx = n_not_2xx + 1
      return
   end
   n_ok = n_ok + 1
   batch_sum = batch_sum + (tonumber(body and body:match('"batch"%s*:%s*{%s*"size"%s*:%s*(%d+)')) or 1)
   decode_scale = decode_scale or (body and body:match('"decode_scale"%s*:%s*"([^"]*)"'))
   local t = body and body:match('"timings_ms"%s*:%s*(%b{})')
   if not t then
      return
   end
   for _, s in ipairs(STAGES) do
      local v = tonumber(t:match('"' .. s .. '"%s*:%s*([-%d%.eE+]+)'))
      if v then
         stage_sums[s] = (stage_sums[s] or 0) + v
      end
   end
   n_timed = n_timed + 1
end

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

local function json_number(v)
   return string.format("%.4f", v)
end

function done(summary, latency, requests)
   local sums, timed, ok, not_2xx, statuses, scale, batched = {}, 0, 0, 0, {}, nil, 0
   for _, t in ipairs(threads) do
      scale = scale or t:get("decode_scale")
      for s, v in pairs(t:get("stage_sums")) do
         sums[s] = (sums[s] or 0) + v
      end
      for code, n in pairs(t:get("n_status")) do
         statuses[code] = (statuses[code] or 0) + n
      end
      timed = timed + t:get("n_timed")
      ok = ok + t:get("n_ok")
      batched = batched + t:get("batch_sum")
      not_2xx = not_2xx + t:get("n_not_2xx")
   end
   local stages = {}
   for _, s in ipairs(STAGES) do
      if sums[s] and timed > 0 then
         table.insert(stages, string.format('"%s":%s', s, json_number(sums[s] / timed)))
      end
   end
   local codes = {}
   for code, n in pairs(statuses) do
      table.insert(codes, string.format('"%d":%d', code, n))
   end
   local e = summary.errors
   local seconds = summary.duration / 1e6
   io.write(string.format(
      'WRK_JSON {"requests":%d,"ok":%d,"duration_s":%s,"requests_per_s":%s,' ..
      '"latency_ms":{"p50":%s,"p90":%s,"p99":%s,"mean":%s,"max":%s},' ..
      '"non_2xx":%d,"wrk_non_2xx_3xx":%d,"statuses":{%s},' ..
      '"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},' ..
      '"server_timings_ms":{%s},"n_timed":%d,"decode_scale":"%s","mean_batch":%s}\n',
      summary.requests, ok, json_number(seconds), json_number(seconds > 0 and summary.requests / seconds or 0),
      json_number(latency:percentile(50) / 1e3), json_number(latency:percentile(90) / 1e3),
      json_number(latency:percentile(99) / 1e3), json_number(latency.mean / 1e3), json_number(latency.max / 1e3),
      not_2xx, e.status, table.concat(codes, ","),
      e.connect, e.read, e.write, e.timeout,
      table.concat(stages, ","), timed, scale or "?", json_number(ok > 0 and batched / ok or 0)))
end

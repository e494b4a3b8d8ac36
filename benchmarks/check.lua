-- wrk's script for benchmarks/load.py: every answer is checked, and the run is reported as one JSON line.
--   BENCH_STATUS    the status every answer must have (200)
--   BENCH_EXPECT    text every answer's body must contain (an id, say), so that an error page cannot look fast
--   BENCH_AUTH      the Authorization header, if any
--   BENCH_DELAY_MS  a pause before each request on each connection: paced load instead of as fast as it goes
local expected_status = tonumber(os.getenv("BENCH_STATUS") or "200")
local expected_text = os.getenv("BENCH_EXPECT") or ""
local pause_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
local auth = os.getenv("BENCH_AUTH")
if auth and auth ~= "" then
   wrk.headers["Authorization"] = auth
end

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   checked = 0
   wrong = 0
   sample = ""
end

if pause_ms > 0 then
   function delay()
      return pause_ms
   end
end

function response(status, headers, body)
   checked = checked + 1
   if status ~= expected_status or not string.find(body or "", expected_text, 1, true) then
      wrong = wrong + 1
      if sample == "" then
         sample = status .. " " .. string.sub(body or "", 1, 300)
      end
   end
end

function done(summary, latency, requests)
   local all_checked, all_wrong, a_sample = 0, 0, ""
   for _, thread in ipairs(threads) do
      all_checked = all_checked + thread:get("checked")
      all_wrong = all_wrong + thread:get("wrong")
      local s = thread:get("sample")
      if s ~= "" then
         a_sample = s
      end
   end
   local errors = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "checked": %d, "wrong": %d, '
         .. '"socket_errors": %d, "non_2xx_3xx": %d}\n',
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), all_checked, all_wrong,
      errors.connect + errors.read + errors.write + errors.timeout, errors.status))
   if a_sample ~= "" then
      io.write("BENCH_SAMPLE " .. a_sample:gsub("\n", " ") .. "\n")
   end
end

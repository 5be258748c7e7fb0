-- Shared by the benchmark scripts: argument parsing and one JSON summary line at the end.
-- wrk runs init/request/response in each thread's Lua state and done() in the main one;
-- values cross over only through setup(thread) + thread:get(name).

local M = {}

-- "name=value" arguments after `--` on the wrk command line
function M.parse_args(args)
  local out = {}
  for _, a in ipairs(args or {}) do
    local k, v = a:match("^([%w_]+)=(.*)$")
    if k then out[k] = v end
  end
  return out
end

function M.read_lines(path)
  local lines = {}
  local f = assert(io.open(path, "r"), "cannot open " .. path)
  for line in f:lines() do
    if #line > 0 then lines[#lines + 1] = line end
  end
  f:close()
  return lines
end

-- one line the Python driver parses: latency in microseconds
function M.summary_line(summary, latency, extra)
  local e = summary.errors
  local parts = {
    string.format('"requests":%d', summary.requests),
    string.format('"duration_us":%d', summary.duration),
    string.format('"bytes":%d', summary.bytes),
    string.format('"errors_connect":%d', e.connect),
    string.format('"errors_read":%d', e.read),
    string.format('"errors_write":%d', e.write),
    string.format('"errors_status":%d', e.status),
    string.format('"errors_timeout":%d', e.timeout),
    string.format('"lat_mean_us":%.1f', latency.mean),
    string.format('"lat_max_us":%d', latency.max),
    string.format('"lat_p50_us":%d', latency:percentile(50)),
    string.format('"lat_p90_us":%d', latency:percentile(90)),
    string.format('"lat_p99_us":%d', latency:percentile(99)),
    string.format('"lat_p999_us":%d', latency:percentile(99.9)),
  }
  for k, v in pairs(extra or {}) do
    parts[#parts + 1] = string.format('"%s":%s', k, tostring(v))
  end
  io.write("BENCH_JSON {" .. table.concat(parts, ",") .. "}\n")
end

-- Paced (sub-saturation) runs: env WRK_MEAN_DELAY_MS=<ms> defines a global delay() giving each
-- connection an exponential think time with that mean (Poisson-like arrivals). wrk looks for
-- delay() when the script is loaded, so saturating runs do not define it at all.
function M.install_delay()
  local mean_ms = tonumber(os.getenv("WRK_MEAN_DELAY_MS") or "0")
  if mean_ms > 0 then
    math.randomseed(os.time())
    delay = function()
      return -math.log(1 - math.random()) * mean_ms
    end
  end
end

return M

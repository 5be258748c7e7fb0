-- POST /v1/decide with a decide-scope key, rotating experiments and unit ids.
-- Arguments (after `--`): key=<api key> experiments=<file, one key a line>
--   units=<size of the unit-id pool, default 200000>
--   path=<request path, default /v1/decide; the baseline's /echo takes the same bodies>
-- Environment: WRK_MEAN_DELAY_MS=<ms> paces each connection (see common.lua);
--   WRK_HARVEST_FILE=<path>: collect every decision_id answered and append them to that file
--   at the end; harvest requests use a never-seen unit id each, so the ids are distinct.
package.path = debug.getinfo(1, "S").source:match("^@(.*/)") .. "?.lua;" .. package.path
local common = require("common")
common.install_delay()

local COUNTRIES = { "DE", "FR", "US", "GB", "BR", "JP", "IN" }
local PLANS = { "free", "pro", "team" }
local PREBUILT = 65536
local HARVEST_FILE = os.getenv("WRK_HARVEST_FILE")

local exps, prebuilt, n, units
local path = "/v1/decide"
local headers = {}
ids = {}  -- thread global, read by done() through thread:get("ids")
local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

local function body(i, unit)
  local exp = exps[(i % #exps) + 1]
  return string.format(
    '{"experiment":"%s","unit_id":"user-%d","context":{"country":"%s","plan":"%s","app_version":"4.%d.0"}}',
    exp, unit, COUNTRIES[(unit % #COUNTRIES) + 1], PLANS[(unit % #PLANS) + 1], unit % 10)
end

function init(args)
  local a = common.parse_args(args)
  exps = common.read_lines(a.experiments)
  units = tonumber(a.units or "200000")
  path = a.path or path
  headers["Authorization"] = "Bearer " .. a.key
  headers["Content-Type"] = "application/json"
  n = 0
  if not HARVEST_FILE then
    -- pre-formatted requests: the Lua cost per request is a table lookup
    prebuilt = {}
    for i = 1, PREBUILT do
      -- a multiplicative walk over the unit pool: sticky repeats happen, but no short cycles
      local unit = (i * 7919) % units
      prebuilt[i] = wrk.format("POST", path, headers, body(i, unit))
    end
  end
end

function request()
  n = n + 1
  if prebuilt then
    return prebuilt[((n - 1) % PREBUILT) + 1]
  end
  return wrk.format("POST", path, headers, body(n, 1000000 + n))
end

if HARVEST_FILE then
  function response(status, hdrs, resp_body)
    if status == 200 then
      local id = resp_body:match('"decision_id":"([%w_%-]+)"')
      if id then ids[#ids + 1] = id end
    end
  end
end

function done(summary, latency, requests)
  local harvested = 0
  if HARVEST_FILE then
    local f = assert(io.open(HARVEST_FILE, "a"))
    for _, t in ipairs(threads) do
      local got = t:get("ids")
      for _, id in ipairs(got) do f:write(id, "\n") end
      harvested = harvested + #got
    end
    f:close()
  end
  common.summary_line(summary, latency, { harvested = harvested })
end

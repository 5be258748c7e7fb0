-- POST /v1/rewards: single rewards (batch=1, one JSON object) or lists of `batch` rewards.
-- Arguments (after `--`): key=<api key> ids=<file of decision ids> offset=<first line, 0-based>
--   count=<ids to use> batch=<items per request>
--   metrics=<comma list, default "reward">: each decision id gets one item per metric, in order
--     (binary metrics get 0/1; a metric named like "*_ms" gets a latency-like float)
-- Each id is used once until the slice is exhausted; then the run wraps around and repeats
-- count as duplicates (reported separately: the server answers {accepted, duplicates}).
package.path = debug.getinfo(1, "S").source:match("^@(.*/)") .. "?.lua;" .. package.path
local common = require("common")

local reqs, n
accepted, duplicates, answered, wraps = 0, 0, 0, 0
local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function init(args)
  local a = common.parse_args(args)
  local all = common.read_lines(a.ids)
  local offset = tonumber(a.offset or "0")
  local count = tonumber(a.count or tostring(#all - offset))
  local batch = tonumber(a.batch or "1")
  local metrics = {}
  for m in (a.metrics or "reward"):gmatch("[^,]+") do metrics[#metrics + 1] = m end
  local headers = { ["Authorization"] = "Bearer " .. a.key, ["Content-Type"] = "application/json" }
  reqs = {}
  local last = math.min(offset + count, #all)
  local items = {}
  local function flush()
    local body
    if batch == 1 then body = items[1] else body = "[" .. table.concat(items, ",") .. "]" end
    reqs[#reqs + 1] = wrk.format("POST", "/v1/rewards", headers, body)
    items = {}
  end
  -- values depend only on the id's line number, so a repeated id is an identical repeat
  -- (counted as a duplicate), never a conflicting value (409)
  for j = offset + 1, last do
    for _, m in ipairs(metrics) do
      local item
      if m == "reward" then
        item = string.format('{"decision_id":"%s","value":%d}', all[j], j % 2)
      elseif m:match("_ms$") then
        item = string.format('{"decision_id":"%s","metric":"%s","value":%.1f}',
          all[j], m, 200 + (j * 37) % 1800)
      else
        item = string.format('{"decision_id":"%s","metric":"%s","value":%d}',
          all[j], m, (j % 20 == 0) and 1 or 0)
      end
      items[#items + 1] = item
      if #items == batch then flush() end
    end
  end
  assert(#reqs > 0, "not enough decision ids for one request")
  n = 0
end

function request()
  n = n + 1
  if n > #reqs then wraps = math.floor((n - 1) / #reqs) end
  return reqs[((n - 1) % #reqs) + 1]
end

function response(status, hdrs, body)
  if status == 202 then
    answered = answered + 1
    local acc, dup = body:match('"accepted":(%d+),"duplicates":(%d+)')
    if acc then
      accepted = accepted + tonumber(acc)
      duplicates = duplicates + tonumber(dup)
    end
  end
end

function done(summary, latency, requests)
  local acc, dup, ans, w = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    acc = acc + t:get("accepted")
    dup = dup + t:get("duplicates")
    ans = ans + t:get("answered")
    w = math.max(w, t:get("wraps"))
  end
  common.summary_line(summary, latency, {
    accepted = acc, duplicates = dup, answered_202 = ans, wraps = w,
  })
end

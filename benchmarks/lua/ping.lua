-- Baseline: GET /ping (paced when WRK_MEAN_DELAY_MS is set).
package.path = debug.getinfo(1, "S").source:match("^@(.*/)") .. "?.lua;" .. package.path
local common = require("common")
common.install_delay()

wrk.method = "GET"
wrk.path = "/ping"

function done(summary, latency, requests)
  common.summary_line(summary, latency)
end

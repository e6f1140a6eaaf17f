-- $METHOD (PATCH or GET) on the sources listed in $PATHS (space-separated), round robin; a PATCH sets the description.
-- Each wrk thread has its own Lua state (and the same random seed): setup gives each a distinct start and tag, so two
-- threads never send the same description to the same source (an unchanged description appends no event), and the
-- two threads' in-flight requests (at most 8 consecutive sources each) never touch the same source at once.
wrk.method = os.getenv("METHOD")
wrk.headers["Authorization"] = "Bearer " .. os.getenv("KEY")
if wrk.method == "PATCH" then wrk.headers["Content-Type"] = "application/json" end
local paths = {}
for p in string.gmatch(os.getenv("PATHS"), "%S+") do paths[#paths + 1] = p end
local threads = 0
setup = function(thread) threads = threads + 1; thread:set("tag", threads) end
local n = 0
init = function(args) n = tag * 32 end
request = function()
  n = n + 1
  local body = nil
  if wrk.method == "PATCH" then body = '{"description":"load ' .. tag .. '-' .. n .. '"}' end
  return wrk.format(nil, paths[(n % #paths) + 1], nil, body)
end

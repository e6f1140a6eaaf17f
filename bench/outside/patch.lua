-- PATCH the description of one of the sources listed in $PATHS (space-separated), round robin per connection.
wrk.method = "PATCH"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("KEY")
local paths = {}
for p in string.gmatch(os.getenv("PATHS"), "%S+") do paths[#paths + 1] = p end
-- Each wrk thread has its own Lua state (and the same random seed): setup gives each a distinct start and tag, so two
-- threads never send the same description to the same source (an unchanged description appends no event), and the
-- two threads' in-flight requests (at most 8 consecutive sources each) never touch the same source at once.
local threads = 0
setup = function(thread) threads = threads + 1; thread:set("tag", threads) end
local n = 0
init = function(args) n = tag * 32 end
request = function()
  n = n + 1
  return wrk.format(nil, paths[(n % #paths) + 1], nil, '{"description":"load ' .. tag .. '-' .. n .. '"}')
end

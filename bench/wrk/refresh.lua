-- POST /auth/refresh, each wrk thread (one connection each) rotating its own session's chain:
-- the refresh token of every response is the one the next request presents.
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  local tokens = {}
  for line in io.lines(os.getenv("TOKENS")) do tokens[#tokens + 1] = line end
  token = tokens[(id % #tokens) + 1]
  headers = { ["Content-Type"] = "application/json" }
end

function request()
  return wrk.format("POST", os.getenv("PREFIX") .. "/refresh", headers, '{"refresh_token":"' .. token .. '"}')
end

function response(status, hdrs, body)
  if status == 200 then
    local next_token = body:match('"refresh_token":"([^"]+)"')
    if next_token then token = next_token end
  end
end

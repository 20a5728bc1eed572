-- GET /auth/me, each wrk thread (one connection each) with its own user's access token.
-- Tokens: one per line in the file named by the TOKENS environment variable.
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  local tokens = {}
  for line in io.lines(os.getenv("TOKENS")) do tokens[#tokens + 1] = line end
  token = tokens[(id % #tokens) + 1]
  headers = { ["Authorization"] = "Bearer " .. token }
end

function request()
  return wrk.format("GET", os.getenv("PREFIX") .. "/me", headers)
end

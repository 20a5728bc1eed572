-- POST /auth/login with the right password, users taken in turn (one per thread).
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  local emails = {}
  for line in io.lines(os.getenv("EMAILS")) do emails[#emails + 1] = line end
  body = '{"email":"' .. emails[(id % #emails) + 1] .. '","password":"' .. os.getenv("PASSWORD") .. '"}'
  headers = { ["Content-Type"] = "application/json" }
end

function request()
  return wrk.format("POST", os.getenv("PREFIX") .. "/login", headers, body)
end

-- wrk: POST /v1/purify, each request one of the PNGs in $PURIFY_IMAGES (000.png, 001.png, …).
local bodies = {}
local directory = os.getenv("PURIFY_IMAGES")
for index = 0, 1023 do
  local file = io.open(string.format("%s/%03d.png", directory, index), "rb")
  if not file then break end
  bodies[#bodies + 1] = file:read("*a")
  file:close()
end
assert(#bodies > 0, "no images in " .. tostring(directory))

local next_body = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "image/png"

request = function()
  next_body = next_body % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[next_body])
end

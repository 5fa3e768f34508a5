-- wrk script: pipelined requests, DEPTH per write (default 16).
--   wrk -s bench/pipeline.lua URL -- /hello 16
-- wrk counts every response, so Requests/sec is responses per second.
local path, depth = "/hello", 16

function init(args)
  path = args[1] or path
  depth = tonumber(args[2] or depth)
  local reqs = {}
  for i = 1, depth do
    reqs[i] = wrk.format(nil, path)
  end
  batch = table.concat(reqs)
end

function request()
  return batch
end

-- berth_live: live upstream membership for nginx's Lua balancer.
--
-- berth pushes endpoint sets to the server block nginx-lua.tmpl renders on
-- a unix socket in a directory only berth can enter; this module keeps them
-- in the shared dict berth_live and balances each upstream over them, so
-- that containers starting, draining and stopping never reload nginx.
--
-- Dict keys: "gen" is the generation token of the set the dict holds (berth
-- picks one per run; a fresh dict has none, so berth sees a restarted
-- nginx and pushes the whole set again); "u:<upstream>" is an upstream's
-- servers, "host port weight draining" joined by ",".
--
-- A push (POST) is lines:
--   gen <token>          the generation the push belongs to (required)
--   full                 the push is the whole set: upstreams not in it go
--   u <name> <servers>   an upstream's servers (replacing what it had)
--   d <name>             an upstream that is gone
-- A push that is not full and names another generation than the dict's is
-- refused with 409 (berth then pushes the whole set). GET answers the
-- dict's generation. init() loads the file berth writes beside the socket
-- (the same lines), so that a restarted nginx serves the last set before
-- berth's next push.
--
-- Balancing is smooth weighted round robin per worker over the servers not
-- draining. An upstream berth never pushed (not in the dict), or with no
-- server taking new requests, is left to nginx: its own server lines (the
-- static servers) are used; in live mode that is one placeholder marked
-- down, so nginx answers 502.
local balancer = require "ngx.balancer"

local _M = {}
local dict = ngx.shared.berth_live
local cache = {} -- per worker: upstream name -> {raw, peers, total}

-- apply takes one push; it returns an HTTP status and a message.
function _M.apply(body)
  if dict == nil then
    return 500, "lua_shared_dict berth_live is not declared"
  end
  local gen, full
  local sets, dels = {}, {}
  for line in body:gmatch("[^\n]+") do
    local op, rest = line:match("^(%S+) ?(.*)$")
    if op == "gen" and rest ~= "" then
      gen = rest
    elseif op == "full" then
      full = true
    elseif op == "u" then
      local name, servers = rest:match("^(%S+) ?(.*)$")
      if name == nil then
        return 400, "u without an upstream name"
      end
      sets[#sets + 1] = { name, servers }
    elseif op == "d" and rest ~= "" then
      dels[#dels + 1] = rest
    else
      return 400, "bad line: " .. line:sub(1, 80)
    end
  end
  if gen == nil then
    return 400, "no generation"
  end
  local cur = dict:get("gen")
  if not full and cur ~= gen then
    return 409, cur or ""
  end
  if full then
    local keep = {}
    for _, s in ipairs(sets) do
      keep["u:" .. s[1]] = true
    end
    for _, k in ipairs(dict:get_keys(0)) do
      if k:sub(1, 2) == "u:" and not keep[k] then
        dict:delete(k)
      end
    end
  end
  for _, s in ipairs(sets) do
    local ok, err = dict:safe_set("u:" .. s[1], s[2])
    if not ok then
      dict:delete("gen") -- half applied: the next push must be whole
      return 507, "upstream " .. s[1] .. ": " .. tostring(err) .. " (raise lua_shared_dict berth_live)"
    end
  end
  for _, name in ipairs(dels) do
    dict:delete("u:" .. name)
  end
  local ok, err = dict:safe_set("gen", gen)
  if not ok then
    return 507, "generation: " .. tostring(err)
  end
  return 200, "ok " .. #sets .. " set, " .. #dels .. " deleted"
end

-- serve is the content handler of the push endpoint.
function _M.serve()
  if ngx.req.get_method() == "GET" then
    ngx.say(dict and dict:get("gen") or "")
    return
  end
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if body == nil then
    local name = ngx.req.get_body_file()
    if name ~= nil then
      local f = io.open(name, "rb")
      if f ~= nil then
        body = f:read("*a")
        f:close()
      end
    end
  end
  local status, msg = _M.apply(body or "")
  if status ~= 200 then
    ngx.log(ngx.ERR, "berth_live: push refused: ", msg)
  end
  ngx.status = status
  ngx.say(msg)
end

-- init loads the last set berth wrote to file (if any) into the dict; it
-- runs in init_by_lua (nginx's start, reload and -t).
function _M.init(file)
  local f = io.open(file, "rb")
  if f == nil then
    return
  end
  local body = f:read("*a")
  f:close()
  local status, msg = _M.apply(body)
  if status ~= 200 then
    ngx.log(ngx.ERR, "berth_live: ", file, ": ", msg)
  end
end

local function peers(name)
  local raw = dict:get("u:" .. name)
  if raw == nil then
    return nil
  end
  local c = cache[name]
  if c ~= nil and c.raw == raw then
    return c
  end
  c = { raw = raw, peers = {}, total = 0 }
  for host, port, w, d in raw:gmatch("([^%s,]+) (%d+) (%d+) ([01])") do
    if d == "0" then
      local p = { host = host, port = tonumber(port), weight = tonumber(w), current = 0 }
      c.peers[#c.peers + 1] = p
      c.total = c.total + p.weight
    end
  end
  cache[name] = c
  return c
end

-- pick is one step of smooth weighted round robin over the servers not
-- in tried (those a retried request already failed on), or over all of
-- them when every one was tried.
local function pick(c, tried)
  local best, total = nil, 0
  for _, p in ipairs(c.peers) do
    if tried == nil or not tried[p.host .. " " .. p.port] then
      p.current = p.current + p.weight
      total = total + p.weight
      if best == nil or p.current > best.current then
        best = p
      end
    end
  end
  if best == nil and tried ~= nil then
    return pick(c, nil)
  end
  if best ~= nil then
    best.current = best.current - total
  end
  return best
end

-- balance is the balancer_by_lua handler of upstream name.
function _M.balance(name)
  local c = peers(name)
  if c == nil then
    return -- never pushed: nginx's own servers of this upstream
  end
  local ctx = ngx.ctx
  local tried = ctx.berth_tried
  if tried == nil and #c.peers > 1 then
    -- up to two more servers after a failed connect; the placeholder
    -- server is down, so nginx itself allows none
    balancer.set_more_tries(math.min(#c.peers, 3))
  end
  local p = pick(c, tried)
  if p == nil then
    -- every server is draining (or none is left): nginx's own servers of
    -- this upstream, the placeholder "down" in live mode (502)
    ngx.log(ngx.INFO, "berth_live: upstream ", name, " has no server taking new requests")
    return
  end
  ctx.berth_tried = tried or {}
  ctx.berth_tried[p.host .. " " .. p.port] = true
  local ok, err = balancer.set_current_peer(p.host, p.port)
  if not ok then
    ngx.log(ngx.ERR, "berth_live: upstream ", name, ": ", err)
    return ngx.exit(500)
  end
end

return _M

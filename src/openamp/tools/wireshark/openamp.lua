-- Wireshark dissector for pyopenamp captures (OpenAMP / RPMsg links).
--
-- pyopenamp writes one pcapng interface per link with link-layer type LINKTYPE_USER0
-- (147).  Each packet is one capture record (openamp.tools.capture.RECORD, little-endian):
--
--   u8 version (1), u8 kind, u8 direction, u8 app, u16 head length, u16 vring,
--   i32 slot, u32 buffer length, u64 buffer address, u32 aux
--
-- followed by a body that depends on the kind; a message's body is the 16-byte rpmsg
-- header (src, dst, reserved, len, flags) and the payload.  The payload is decoded as the
-- name service (messages to 0x35), or as the demos' protocols: echo, matrix, proxy, RPC,
-- client sample -- by the application hint pyopenamp recorded, else by the same guesses
-- openamp.tools.decode makes.
--
-- Install: copy this file into your personal Lua plugins folder (Wireshark: Help ->
-- About Wireshark -> Folders -> Personal Lua Plugins, e.g. ~/.local/lib/wireshark/plugins)
-- or load it for one run:  tshark -X lua_script:openamp.lua -r capture.pcapng
-- `openamp capture dissector` prints where pyopenamp installed it.

local openamp = Proto("openamp", "OpenAMP capture record")
local rpmsg = Proto("rpmsg", "RPMsg")
local p_echo = Proto("rpmsg_echo", "OpenAMP echo demo")
local p_matrix = Proto("rpmsg_matrix", "OpenAMP matrix demo")
local p_proxy = Proto("rpmsg_proxy", "OpenAMP proxy (retarget)")
local p_rpc = Proto("rpmsg_rpc", "OpenAMP RPC")
local p_sample = Proto("rpmsg_sample", "RPMsg client sample")

local KINDS = {
  [1] = "message", [2] = "status", [3] = "features", [4] = "config", [5] = "kick",
  [6] = "endpoint", [7] = "error", [8] = "link", [9] = "missed",
}
local APPS = { [0] = "unknown", [1] = "ns", [2] = "echo", [3] = "matrix", [4] = "proxy",
  [5] = "rpc", [6] = "sample" }
local DIRS = { [0] = "none", [1] = "tx", [2] = "rx" }
local ROLES = { [0] = "driver", [1] = "device", [2] = "tap" }
local ACTIONS = { [0] = "announce", [1] = "bind", [2] = "unbind", [3] = "destroy" }
local NS_FLAGS = { [0] = "create", [1] = "destroy" }
local PROXY_CALLS = { [1] = "open", [2] = "close", [3] = "write", [4] = "read", [6] = "terminate" }
local RPC_CALLS = { [1] = "open", [2] = "close", [3] = "write", [4] = "read", [5] = "ack",
  [6] = "terminate", [7] = "input" }
local SHUTDOWN = 0xEF56A55A

local f = openamp.fields
f.version = ProtoField.uint8("openamp.version", "Record version")
f.kind = ProtoField.uint8("openamp.kind", "Kind", base.DEC, KINDS)
f.dir = ProtoField.uint8("openamp.dir", "Direction", base.DEC, DIRS, 0x03)
f.h2r = ProtoField.bool("openamp.h2r", "Host to remote", 8, { "host -> remote", "remote -> host" }, 0x04)
f.h2r_known = ProtoField.bool("openamp.h2r_known", "Side known", 8, nil, 0x08)
f.app = ProtoField.uint8("openamp.app", "Application", base.DEC, APPS)
f.head_len = ProtoField.uint16("openamp.head_len", "Head length")
f.vring = ProtoField.uint16("openamp.vring", "Vring")
f.slot = ProtoField.int32("openamp.slot", "Buffer index")
f.buflen = ProtoField.uint32("openamp.buflen", "Buffer length")
f.buffer = ProtoField.uint64("openamp.buffer", "Buffer address", base.HEX)
f.status = ProtoField.uint32("openamp.status", "Status", base.HEX)
f.notifyid = ProtoField.uint32("openamp.notifyid", "Notify id")
f.missed = ProtoField.uint32("openamp.missed", "Missed messages")
f.missed_reason = ProtoField.string("openamp.missed.reason", "Why")
f.dfeatures = ProtoField.uint64("openamp.features.device", "Device features", base.HEX)
f.gfeatures = ProtoField.uint64("openamp.features.driver", "Driver features", base.HEX)
f.config = ProtoField.bytes("openamp.config", "Config space")
f.ep_action = ProtoField.uint8("openamp.endpoint.action", "Action", base.DEC, ACTIONS)
f.ep_addr = ProtoField.uint32("openamp.endpoint.addr", "Address", base.HEX)
f.ep_dest = ProtoField.uint32("openamp.endpoint.dest", "Peer address", base.HEX)
f.ep_name = ProtoField.string("openamp.endpoint.name", "Name")
f.err_class = ProtoField.string("openamp.error.class", "Error")
f.err_message = ProtoField.string("openamp.error.message", "Message")
f.link_role = ProtoField.uint8("openamp.link.role", "Role", base.DEC, ROLES)
f.link_nvrings = ProtoField.uint8("openamp.link.nvrings", "Vrings")
f.link_features = ProtoField.uint64("openamp.link.features", "Features", base.HEX)
f.link_rx = ProtoField.uint32("openamp.link.rx_size", "Receive buffer size")
f.link_tx = ProtoField.uint32("openamp.link.tx_size", "Transmit buffer size")
f.link_vring = ProtoField.uint32("openamp.link.vring", "Vring")
f.link_pa = ProtoField.uint64("openamp.link.vring.pa", "Address", base.HEX)
f.link_num = ProtoField.uint32("openamp.link.vring.num", "Entries")
f.link_align = ProtoField.uint32("openamp.link.vring.align", "Align", base.HEX)
f.link_notifyid = ProtoField.uint32("openamp.link.vring.notifyid", "Notify id")

local r = rpmsg.fields
r.src = ProtoField.uint32("rpmsg.src", "Source", base.HEX)
r.dst = ProtoField.uint32("rpmsg.dst", "Destination", base.HEX)
r.reserved = ProtoField.uint32("rpmsg.reserved", "Reserved (receiver's buffer index)")
r.len = ProtoField.uint16("rpmsg.len", "Length")
r.flags = ProtoField.uint16("rpmsg.flags", "Flags", base.HEX)
r.payload = ProtoField.bytes("rpmsg.payload", "Payload")
r.ns_name = ProtoField.stringz("rpmsg.ns.name", "Service name")
r.ns_addr = ProtoField.uint32("rpmsg.ns.addr", "Address", base.HEX)
r.ns_flags = ProtoField.uint32("rpmsg.ns.flags", "Flags", base.DEC, NS_FLAGS)

local e = p_echo.fields
e.num = ProtoField.uint64("rpmsg_echo.num", "Number")
e.size = ProtoField.uint64("rpmsg_echo.size", "Data size")
e.intact = ProtoField.bool("rpmsg_echo.intact", "Data all 0xA5")
e.shutdown = ProtoField.bool("rpmsg_echo.shutdown", "Shutdown message")

local m = p_matrix.fields
m.kind = ProtoField.string("rpmsg_matrix.kind", "Kind")
m.size = ProtoField.uint32("rpmsg_matrix.size", "Size")
m.row = ProtoField.string("rpmsg_matrix.row", "Row")

local x = p_proxy.fields
x.kind = ProtoField.string("rpmsg_proxy.kind", "Kind")
x.id = ProtoField.uint32("rpmsg_proxy.id", "Id")
x.call = ProtoField.string("rpmsg_proxy.call", "Call")
x.int1 = ProtoField.int32("rpmsg_proxy.int1", "int_field1")
x.int2 = ProtoField.int32("rpmsg_proxy.int2", "int_field2")
x.data_len = ProtoField.uint32("rpmsg_proxy.data_len", "Data length")
x.data = ProtoField.bytes("rpmsg_proxy.data", "Data")

local c = p_rpc.fields
c.kind = ProtoField.string("rpmsg_rpc.kind", "Kind")
c.id = ProtoField.uint32("rpmsg_rpc.id", "Id")
c.call = ProtoField.string("rpmsg_rpc.call", "Call")
c.status = ProtoField.int32("rpmsg_rpc.status", "Status")
c.length = ProtoField.uint32("rpmsg_rpc.length", "Params/result length")

local s = p_sample.fields
s.text = ProtoField.string("rpmsg_sample.text", "Text")

local function hex(v)
  return string.format("0x%x", v)
end

local function addr(v)
  if v == 0xFFFFFFFF then return "ANY" end
  return hex(v)
end

local function printable(t)
  if t:len() == 0 then return false end
  for i = 0, t:len() - 1 do
    local b = t(i, 1):uint()
    if not ((b >= 0x20 and b < 0x7F) or b == 9 or b == 10 or b == 13) then return false end
  end
  return true
end

-- the guesses of openamp.tools.decode.guess_app, in the same order
local function guess_app(p, dst)
  local n = p:len()
  if dst == 0x35 and n == 40 then return "ns" end
  if n >= 4 and p(0, 4):le_uint() == SHUTDOWN then return "echo" end
  if n >= 16 and p(8, 8):le_uint64():tonumber() == n - 16 then return "echo" end
  if n == 296 or n == 148 then return "matrix" end
  if n >= 16 then
    local id = p(0, 4):le_uint()
    if PROXY_CALLS[id] and p(12, 4):le_uint() == n - 16 then return "proxy" end
  end
  if printable(p) then return "sample" end
  return ""
end

local function dissect_ns(p, tree)
  local t = tree:add(rpmsg, p, "Name service")
  if p:len() ~= 40 then
    t:append_text(string.format(" (malformed: %d bytes, must be 40)", p:len()))
    return "malformed name-service message"
  end
  t:add(r.ns_name, p(0, 32))
  t:add_le(r.ns_addr, p(32, 4))
  t:add_le(r.ns_flags, p(36, 4))
  local what = NS_FLAGS[p(36, 4):le_uint()] or "?"
  return string.format("NS %s '%s' at %s", what, p(0, 32):stringz(), addr(p(32, 4):le_uint()))
end

local function dissect_echo(p, tree)
  local t = tree:add(p_echo, p)
  local n = p:len()
  if n >= 4 and p(0, 4):le_uint() == SHUTDOWN then
    t:add(e.shutdown, true)
    return "shutdown message (0xEF56A55A)"
  end
  if n >= 16 and p(8, 8):le_uint64():tonumber() == n - 16 then
    local intact = true
    for i = 16, n - 1 do
      if p(i, 1):uint() ~= 0xA5 then intact = false break end
    end
    t:add_le(e.num, p(0, 8))
    t:add_le(e.size, p(8, 8))
    t:add(e.intact, intact)
    local text = string.format("echo #%s, %d data bytes", tostring(p(0, 8):le_uint64()), n - 16)
    if not intact then text = text .. " (not all 0xA5)" end
    return text
  end
  return string.format("%d bytes", n)
end

local function dissect_matrix(p, tree)
  local t = tree:add(p_matrix, p)
  local n = p:len()
  local kind, count
  if n == 296 then kind, count = "request", 2
  elseif n == 148 then kind, count = "product", 1
  else return string.format("%d bytes: not a matrix request (296) or product (148)", n) end
  t:add(m.kind, kind)
  local shapes = {}
  for i = 0, count - 1 do
    local base = i * 148
    local size = p(base, 4):le_uint()
    t:add_le(m.size, p(base, 4))
    shapes[#shapes + 1] = string.format("%dx%d", size, size)
    for row = 0, 5 do
      local cells = {}
      for col = 0, 5 do
        cells[#cells + 1] = tostring(p(base + 4 + 4 * (6 * row + col), 4):le_uint())
      end
      t:add(m.row, p(base + 4 + 24 * row, 24), table.concat(cells, " "))
    end
  end
  return string.format("matrix %s (%s)", kind, table.concat(shapes, ", "))
end

local function text_of(p, limit)
  local n = math.min(p:len(), limit)
  local out = {}
  for i = 0, n - 1 do
    local b = p(i, 1):uint()
    if b >= 0x20 and b < 0x7F then out[#out + 1] = string.char(b) else out[#out + 1] = "." end
  end
  local text = "'" .. table.concat(out) .. "'"
  if p:len() > limit then text = text .. "..." end
  return text
end

local function dissect_proxy(p, tree, h2r)
  local t = tree:add(p_proxy, p)
  if p:len() < 16 then return string.format("%d bytes: shorter than a syscall record (16)", p:len()) end
  local id = p(0, 4):le_uint()
  local name = PROXY_CALLS[id] or string.format("id %d", id)
  local kind = (h2r == true) and "answer" or "request"
  t:add(x.kind, kind)
  t:add_le(x.id, p(0, 4))
  t:add(x.call, name)
  t:add_le(x.int1, p(4, 4))
  t:add_le(x.int2, p(8, 4))
  t:add_le(x.data_len, p(12, 4))
  local text = string.format("proxy %s %s (%d, %d)", name, kind, p(4, 4):le_int(), p(8, 4):le_int())
  local len = p(12, 4):le_uint()
  local have = p:len() - 16
  if have > 0 then
    local shown = math.min(len, have)
    if shown > 0 then
      t:add(x.data, p(16, shown))
      text = text .. " " .. text_of(p(16, shown), 40)
    end
  end
  if have ~= len then text = text .. string.format(" (claims %d data bytes, has %d)", len, have) end
  return text
end

local rpc_server_is_host = true

local function dissect_rpc(p, tree, h2r)
  local t = tree:add(p_rpc, p)
  local n = p:len()
  if n < 4 then return string.format("%d bytes: shorter than an RPC id", n) end
  local answer
  if rpc_server_is_host then answer = (h2r == true) else answer = (h2r == false) end
  local id = p(0, 4):le_uint()
  local name = RPC_CALLS[id] or string.format("id %d", id)
  t:add(c.kind, answer and "answer" or "request")
  t:add_le(c.id, p(0, 4))
  t:add(c.call, name)
  if answer and n >= 8 then
    t:add_le(c.status, p(4, 4))
    t:add(c.length, n - 8)
    return string.format("rpc %s answer, status %d", name, p(4, 4):le_int())
  end
  t:add(c.length, n - 4)
  local kind = answer and "answer (cut short)" or "request"
  return string.format("rpc %s %s, %d bytes", name, kind, n - 4)
end

local function dissect_sample(p, tree)
  local t = tree:add(p_sample, p)
  t:add(s.text, p)
  return "sample " .. text_of(p, 40)
end

local DECODERS = {
  ns = dissect_ns, echo = dissect_echo, matrix = dissect_matrix, proxy = dissect_proxy,
  rpc = dissect_rpc, sample = dissect_sample,
}

local function dissect_message(body, tree, pinfo, d, app, h2r)
  local t = tree:add(rpmsg, body(0, math.min(16, body:len())), "RPMsg header")
  if body:len() < 16 then return "rpmsg header cut short" end
  t:add_le(r.src, body(0, 4))
  t:add_le(r.dst, body(4, 4))
  t:add_le(r.reserved, body(8, 4))
  t:add_le(r.len, body(12, 2))
  t:add_le(r.flags, body(14, 2))
  local src, dst = body(0, 4):le_uint(), body(4, 4):le_uint()
  pinfo.cols.src = addr(src)
  pinfo.cols.dst = addr(dst)
  local summary = string.format("%s %s -> %s len %d", DIRS[d] or "?", addr(src), addr(dst),
    body(12, 2):le_uint())
  if h2r ~= nil then
    summary = summary .. (h2r and " host->remote" or " remote->host")
  end
  if body:len() == 16 then return summary .. ": empty" end
  local p = body(16):tvb()
  t:add(r.payload, body(16))
  local name = APPS[app]
  if app == 0 or name == nil then name = guess_app(p(), dst) end
  local decoder = DECODERS[name]
  if decoder == nil then
    return summary .. string.format(": %d bytes", p:len())
  end
  return summary .. ": " .. decoder(p(), tree, h2r)
end

function openamp.dissector(tvb, pinfo, tree)
  if tvb:len() < 28 then return 0 end
  pinfo.cols.protocol = "OpenAMP"
  local head_len = tvb(4, 2):le_uint()
  local t = tree:add(openamp, tvb(0, head_len))
  t:add(f.version, tvb(0, 1))
  t:add(f.kind, tvb(1, 1))
  t:add(f.dir, tvb(2, 1))
  t:add(f.h2r, tvb(2, 1))
  t:add(f.h2r_known, tvb(2, 1))
  t:add(f.app, tvb(3, 1))
  t:add_le(f.head_len, tvb(4, 2))
  local kind = tvb(1, 1):uint()
  local dbyte = tvb(2, 1):uint()
  local d = dbyte % 4
  local h2r = nil
  if bit32 and bit32.band(dbyte, 8) ~= 0 then h2r = bit32.band(dbyte, 4) ~= 0
  elseif not bit32 and math.floor(dbyte / 8) % 2 == 1 then h2r = math.floor(dbyte / 4) % 2 == 1 end
  local app = tvb(3, 1):uint()
  local aux = tvb(24, 4)
  local body = tvb(head_len)
  local info
  if kind == 1 then
    pinfo.cols.protocol = "RPMsg"
    t:add_le(f.vring, tvb(6, 2))
    t:add_le(f.slot, tvb(8, 4))
    t:add_le(f.buflen, tvb(12, 4))
    t:add_le(f.buffer, tvb(16, 8))
    if tvb:len() > head_len then
      info = dissect_message(body, tree, pinfo, d, app, h2r)
    else
      info = "message without a header"
    end
  elseif kind == 2 then
    t:add_le(f.status, aux)
    info = string.format("status %s 0x%02x", d == 1 and "written" or "seen", aux:le_uint())
  elseif kind == 3 then
    t:add_le(f.dfeatures, body(0, 8))
    t:add_le(f.gfeatures, body(8, 8))
    info = string.format("features: device 0x%s, driver 0x%s", body(0, 8):le_uint64():tohex(),
      body(8, 8):le_uint64():tohex())
  elseif kind == 4 then
    if body:len() > 0 then t:add(f.config, body) end
    info = string.format("config space (%d bytes)", tvb:len() - head_len)
  elseif kind == 5 then
    t:add_le(f.vring, tvb(6, 2))
    t:add_le(f.notifyid, aux)
    info = string.format("kick vring %d (notify id %d)", tvb(6, 2):le_uint(), aux:le_uint())
  elseif kind == 6 then
    t:add(f.ep_action, body(0, 1))
    t:add_le(f.ep_addr, body(4, 4))
    t:add_le(f.ep_dest, body(8, 4))
    local name = ""
    if body:len() > 12 then
      t:add(f.ep_name, body(12))
      name = body(12):string()
    end
    info = string.format("endpoint %s '%s' at %s, peer %s", ACTIONS[body(0, 1):uint()] or "?",
      name, addr(body(4, 4):le_uint()), addr(body(8, 4):le_uint()))
  elseif kind == 7 then
    local text = body:string()
    local zero = string.find(text, "\0", 1, true)
    local cls, msg = text, ""
    if zero then cls, msg = string.sub(text, 1, zero - 1), string.sub(text, zero + 1) end
    t:add(f.err_class, cls)
    t:add(f.err_message, msg)
    info = "error: " .. cls .. ": " .. msg
  elseif kind == 8 then
    t:add(f.link_role, body(0, 1))
    t:add(f.link_nvrings, body(1, 1))
    t:add_le(f.link_features, body(4, 8))
    t:add_le(f.link_rx, body(12, 4))
    t:add_le(f.link_tx, body(16, 4))
    for i = 0, body(1, 1):uint() - 1 do
      local v = body(20 + 24 * i, 24)
      local vt = t:add_le(f.link_vring, v(0, 4))
      vt:add_le(f.link_pa, v(4, 8))
      vt:add_le(f.link_num, v(12, 4))
      vt:add_le(f.link_align, v(16, 4))
      vt:add_le(f.link_notifyid, v(20, 4))
    end
    info = string.format("link up: %s side, rx %d tx %d", ROLES[body(0, 1):uint()] or "?",
      body(12, 4):le_uint(), body(16, 4):le_uint())
  elseif kind == 9 then
    t:add_le(f.vring, tvb(6, 2))
    t:add_le(f.missed, aux)
    if body:len() > 0 then t:add(f.missed_reason, body) end
    info = string.format("MISSED %d on vring %d", aux:le_uint(), tvb(6, 2):le_uint())
  else
    info = string.format("unknown record kind %d", kind)
  end
  pinfo.cols.info = info
  return tvb:len()
end

local prefs = openamp.prefs
prefs.rpc_server_is_host = Pref.bool("RPC server is the host", true,
  "The host (virtio driver) serves RPC calls, as in the C linux_rpc_demo; answers go host -> remote")

function openamp.prefs_changed()
  rpc_server_is_host = prefs.rpc_server_is_host
end

local encaps = wtap_encaps or wtap
DissectorTable.get("wtap_encap"):add(encaps.USER0, openamp)

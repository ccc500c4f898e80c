-- Prosody 0.12 module for the weft federation harness (interop/s2s): logs, at debug level,
-- every byte of every s2s stream after TLS ("s2s-raw RECV/SEND"), and at info level one line
-- per authenticated s2s link naming its direction and mechanism, which the tests assert on:
--   harness-s2s-auth direction=incoming from=ejabberd.test to=prosody.test mechanism=EXTERNAL
local filters = require "util.filters";

local function is_s2s(session)
	local t = session.type or "";
	return t:sub(1, 3) == "s2s";
end

local function add_raw_log(session)
	if not is_s2s(session) then return; end
	filters.add_filter(session, "bytes/in", function (data)
		session.log("debug", "s2s-raw RECV: %s", data);
		return data;
	end, 10000);
	filters.add_filter(session, "bytes/out", function (data)
		session.log("debug", "s2s-raw SEND: %s", data);
		return data;
	end, -10000);
end

-- The filter hook is process-wide: installed by the VirtualHost only, so that loading this
-- module on the MUC component as well (for its auth lines) logs each byte once.
local raw = module:get_host_type() ~= "component";
if raw then filters.add_filter_hook(add_raw_log); end
function module.unload()
	if raw then filters.remove_filter_hook(add_raw_log); end
end

module:hook("s2s-authenticated", function (event)
	local session = event.session;
	module:log("info", "harness-s2s-auth direction=%s from=%s to=%s mechanism=%s",
		tostring(session.direction),
		tostring(session.direction == "incoming" and event.host or session.from_host),
		tostring(session.direction == "incoming" and session.to_host or event.host),
		tostring(event.mechanism));
end, 1000);

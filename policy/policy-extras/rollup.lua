-- policy-extras.rollup: send mail for many domains through the ready
-- queues (and shaping) of one, when their MX hosts say they are one site.
--
--   local rollup = require 'policy-extras.rollup'
--   kumo.on('smtp_server_message_received', function(msg)
--     rollup.reroute_based_on_mx_host_suffix(msg, {
--       ['.olc.protection.outlook.com.'] = 'outlook.com',
--     })
--   end)
--
-- IP rollup (a last resort, see KumoMTA's user guide for its caveats):
-- `reroute_using_ip_rollup(msg, { [suffix] = 'name.ip_rollup' })` in the
-- reception event, and `apply_ip_rollup_to_queue_config(domain,
-- routing_domain, params)` in get_queue_config, which sends the message to
-- the addresses of the domain's first MX host.
--
-- A domain whose MX lookup fails is left as it is.
local kumo = require 'kumo'

local mod = {}

local function ends_with(text, suffix)
  return text:sub(-#suffix) == suffix
end

local function with_dot(name)
  if name:sub(-1) == '.' then
    return name
  end
  return name .. '.'
end

local function matching(map, host)
  host = with_dot(host:lower())
  for suffix, target in pairs(map) do
    if ends_with(host, with_dot(suffix:lower())) then
      return target
    end
  end
  return nil
end

local function lookup_mx(domain)
  local ok, mx = pcall(kumo.dns.lookup_mx, domain)
  if ok and not mx.is_domain_literal and #mx.hosts > 0 then
    return mx
  end
  return nil
end

-- Set the message's routing domain to `map[suffix]` when every MX host of
-- its recipient's domain ends with a suffix of `map`.
function mod.reroute_based_on_mx_host_suffix(msg, map)
  local mx = lookup_mx(msg:recipient().domain)
  if not mx then
    return
  end
  local target
  for _, host in ipairs(mx.hosts) do
    local this = matching(map, host)
    if not this then
      return
    end
    target = target or this
  end
  msg:set_meta('routing_domain', target)
end

-- The first (most preferred) MX host of a domain.
local function first_mx(domain)
  local mx = lookup_mx(domain)
  if not mx then
    return nil
  end
  local best
  for preference in pairs(mx.by_pref) do
    if not best or preference < best then
      best = preference
    end
  end
  return mx.by_pref[best][1]
end

-- Route the message to `map[suffix]` (a name ending in `.ip_rollup`) when
-- its recipient domain's first MX host ends with a suffix of `map`.
function mod.reroute_using_ip_rollup(msg, map)
  local host = first_mx(msg:recipient().domain)
  local target = host and matching(map, host)
  if target then
    msg:set_meta('routing_domain', target)
  end
end

-- For a queue routed to an `.ip_rollup` name, deliver to the addresses of
-- the domain's first MX host (as a `protocol.smtp.mx_list` of literals).
function mod.apply_ip_rollup_to_queue_config(domain, routing_domain, params)
  if not routing_domain or not ends_with(routing_domain, '.ip_rollup') then
    return params
  end
  local host = first_mx(domain)
  if not host then
    return params
  end
  local ok, addresses = pcall(kumo.dns.lookup_addr, host:sub(1, -2))
  if not ok or #addresses == 0 then
    return params
  end
  table.sort(addresses)
  local mx_list = {}
  for _, addr in ipairs(addresses) do
    table.insert(mx_list, '[' .. addr .. ']')
  end
  params.protocol = { smtp = { mx_list = mx_list } }
  return params
end

return mod

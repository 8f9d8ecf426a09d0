-- policy-extras.listener_domains: which domains a listener relays for,
-- from data files.
--
--   local listener_domains = require 'policy-extras.listener_domains'
--   kumo.on('get_listener_domain',
--     listener_domains:setup { '/opt/petrel/etc/policy/listener_domains.toml' })
--
-- Each top-level table is a domain (`"*.example.com"` matches every name
-- below example.com, `"*"` every domain) with relay_to, relay_from,
-- relay_from_authz, log_oob and log_arf. `[listener."ip:port"."domain"]`
-- tables apply to one listener only. Settings merge from the least to the
-- most specific: "*", the wildcard, the exact domain, then the same three
-- for the listener.
local kumo = require 'kumo'
local utils = require 'policy-extras.policy_utils'

local mod = {}

local OPTIONS = {
  relay_to = 'boolean',
  relay_from = 'table',
  relay_from_authz = 'table',
  log_oob = 'boolean or string',
  log_arf = 'boolean or string',
}

local fail = utils.fail

local function check_entry(file, label, entry)
  if type(entry) ~= 'table' then
    fail(string.format('%s: %s must be a table', file, label))
  end
  for key, value in pairs(entry) do
    local wanted = OPTIONS[key]
    if not wanted then
      fail(string.format('%s: %s: unknown option %q', file, label, key))
    end
    local kind = type(value)
    if kind ~= wanted and not (wanted == 'boolean or string' and (kind == 'boolean' or kind == 'string')) then
      fail(string.format('%s: %s: %s must be a %s', file, label, key, wanted))
    end
  end
  local ok, err = pcall(kumo.make_listener_domain, entry)
  if not ok then
    fail(string.format('%s: %s: %s', file, label, err))
  end
end

-- The wildcard entry covering `domain`, nearest first.
local function wildcard(map, domain)
  local rest = domain
  while true do
    local dot = rest:find('.', 1, true)
    if not dot then
      return nil
    end
    rest = rest:sub(dot + 1)
    local entry = map['*.' .. rest]
    if entry then
      return entry
    end
  end
end

local function layered(map, domain)
  local params = {}
  if map then
    utils.merge_into(map['*'], params)
    utils.merge_into(wildcard(map, domain), params)
    utils.merge_into(map[domain], params)
  end
  return params
end

local function setup(self, files)
  local data, where =
    utils.load_data_files(files, 'policy-extras.listener_domains')
  local listeners = data.listener or {}
  data.listener = nil
  for domain, entry in pairs(data) do
    check_entry(where(domain), string.format('[%q]', domain), entry)
  end
  for listener, domains in pairs(listeners) do
    for domain, entry in pairs(domains) do
      check_entry(
        where('listener', listener),
        string.format('[listener.%q.%q]', listener, domain),
        entry
      )
    end
  end

  return function(domain, listener, conn_meta)
    domain = domain:lower()
    local params = layered(data, domain)
    utils.merge_into(layered(listeners[listener], domain), params)
    if next(params) == nil then
      return nil
    end
    return kumo.make_listener_domain(params)
  end
end

mod.setup = utils.setup_method(setup)

return mod

-- policy-extras.queue: tenants, campaigns, routing domains and queue
-- settings from data files.
--
--   local queue_module = require 'policy-extras.queue'
--   local queue_helper = queue_module:setup { '/opt/petrel/etc/policy/queues.toml' }
--   kumo.on('smtp_server_message_received', function(msg)
--     queue_helper:apply(msg)
--   end)
--
-- Top-level keys: tenant_header, remove_tenant_header, campaign_header,
-- remove_campaign_header, default_tenant, scheduling_header. Tables:
-- [tenant."name"] (queue settings, egress_pool, require_authz),
-- [queue."domain"] (queue settings, routing_domain), [queue."domain"."tenant"]
-- and [queue."domain"."tenant"."campaign"]; [queue.default] applies to
-- every domain. For a message the settings merge from the least to the
-- most specific: queue.default, queue.domain, tenant, queue.domain.tenant,
-- queue.domain.tenant.campaign.
local kumo = require 'kumo'
local utils = require 'policy-extras.policy_utils'

local mod = {}

local TOP_LEVEL = {
  tenant_header = 'string',
  remove_tenant_header = 'boolean',
  campaign_header = 'string',
  remove_campaign_header = 'boolean',
  default_tenant = 'string',
  scheduling_header = 'string',
  remove_scheduling_header = 'boolean',
  tenant = 'table',
  queue = 'table',
}

-- Keys of a [queue] table that are not kumo.make_queue_config options.
local QUEUE_ONLY = { routing_domain = true }
local TENANT_ONLY = { require_authz = true }

local fail = utils.fail

-- The make_queue_config options of a table: scalars and the protocol
-- table, without nested tenant/campaign tables or helper-only keys.
local function settings_of(t, skip)
  local out = {}
  for k, v in pairs(t or {}) do
    if not skip[k] and (type(v) ~= 'table' or k == 'protocol') then
      out[k] = v
    end
  end
  return out
end

local Helper = {}
Helper.__index = Helper

-- The queue settings for a domain, tenant and campaign.
function Helper:resolve(domain, tenant, campaign)
  local queues = self.data.queue or {}
  local tenants = self.data.tenant or {}
  local params = {}
  utils.merge_into(settings_of(queues.default, QUEUE_ONLY), params)
  local by_domain = queues[domain]
  utils.merge_into(settings_of(by_domain, QUEUE_ONLY), params)
  if tenant then
    utils.merge_into(settings_of(tenants[tenant], TENANT_ONLY), params)
    local by_tenant = by_domain and by_domain[tenant]
    if type(by_tenant) == 'table' then
      utils.merge_into(settings_of(by_tenant, QUEUE_ONLY), params)
      local by_campaign = campaign and by_tenant[campaign]
      if type(by_campaign) == 'table' then
        utils.merge_into(settings_of(by_campaign, QUEUE_ONLY), params)
      end
    end
  end
  return params
end

local function take_header(msg, name, remove)
  if not name then
    return nil
  end
  local value = msg:get_first_named_header_value(name)
  if value and remove then
    msg:remove_all_named_headers(name)
  end
  return value
end

-- Set the message's tenant, campaign and routing domain from its headers
-- and the data.
function Helper:apply(msg)
  local data = self.data
  if data.scheduling_header then
    msg:import_scheduling_header(
      data.scheduling_header,
      data.remove_scheduling_header ~= false
    )
  end
  local tenant =
    take_header(msg, data.tenant_header, data.remove_tenant_header)
  if tenant then
    local allowed = (data.tenant or {})[tenant]
    local authz = allowed and allowed.require_authz
    if authz and not utils.table_contains(authz, msg:get_meta 'authn_id') then
      kumo.reject(
        550,
        string.format('5.7.1 not authorized to send as tenant %s', tenant)
      )
    end
  else
    tenant = data.default_tenant
  end
  if tenant then
    msg:set_meta('tenant', tenant)
  end
  local campaign =
    take_header(msg, data.campaign_header, data.remove_campaign_header)
  if campaign then
    msg:set_meta('campaign', campaign)
  end
  local by_domain = (data.queue or {})[msg:recipient().domain]
  if by_domain and by_domain.routing_domain then
    msg:set_meta('routing_domain', by_domain.routing_domain)
  end
end

local function setup(self, files)
  local data, where = utils.load_data_files(files, 'policy-extras.queue')
  for key, value in pairs(data) do
    local wanted = TOP_LEVEL[key]
    if not wanted then
      fail(string.format('%s: unknown top-level key %q', where(key), key))
    end
    if type(value) ~= wanted then
      fail(
        string.format('%s: %s must be a %s', where(key), key, wanted)
      )
    end
  end
  local helper = setmetatable({ data = data }, Helper)
  -- Check every table now, so a bad duration or an option Petrel does not
  -- support fails the load naming its file and key.
  local function check(section, key, params)
    local ok, err = pcall(kumo.make_queue_config, params)
    if not ok then
      fail(string.format('%s: %s.%q: %s', where(section, key), section, key, err))
    end
  end
  for name, t in pairs(data.tenant or {}) do
    check('tenant', name, settings_of(t, TENANT_ONLY))
  end
  for name, t in pairs(data.queue or {}) do
    check('queue', name, settings_of(t, QUEUE_ONLY))
    for tenant, by_tenant in pairs(t) do
      if type(by_tenant) == 'table' and tenant ~= 'protocol' then
        check('queue', name .. '.' .. tenant, settings_of(by_tenant, QUEUE_ONLY))
      end
    end
  end

  kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
    return kumo.make_queue_config(helper:resolve(domain, tenant, campaign))
  end)
  return helper
end

mod.setup = utils.setup_method(setup)

return mod

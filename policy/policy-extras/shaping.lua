-- policy-extras.shaping: egress path settings (traffic shaping) from data
-- files.
--
--   local shaping = require 'policy-extras.shaping'
--   kumo.on('get_egress_path_config',
--     shaping:setup { '/opt/petrel/etc/policy/shaping.toml' })
--
-- Files are TOML (or JSON by extension), read in order, later ones merging
-- over earlier ones. Top-level tables are domains (`["gmail.com"]`), the
-- special `["default"]`, and `[provider."name"]` blocks with a `match` list
-- of `{DomainSuffix=...}`, `{MXSuffix=...}` or `{HostName=...}`. Any block
-- may hold `sources."name"` tables for one egress source. Options are those
-- of kumo.make_egress_path, plus `mx_rollup` (default true: the block
-- applies to every domain sharing the domain's MX site) and `replace_base`.
--
-- Settings resolve as KumoMTA documents: default, matching providers,
-- their source tables, MX-site blocks, domain blocks (`mx_rollup = false`),
-- site source tables, domain source tables; `replace_base = true` drops
-- what was merged before that block.
--
-- `automation` rules (`[["gmail.com".automation]]`: regex, action =
-- Suspend | SuspendTenant | SuspendCampaign | {SetConfig = {name, value}},
-- duration, trigger = Immediate
-- | {Threshold = "N/period"}) apply with `setup_with_automation`, which
-- runs them in Petrel itself (no TSA daemon; `publish` and `subscribe`
-- name none):
--
--   local shaper = shaping:setup_with_automation { extra_files = { ... } }
--   kumo.on('init', function() ... shaper.setup_publish() end)
--   kumo.on('get_egress_path_config', shaper.get_egress_path_config)
--
-- With plain `setup` they are reported and not applied (as KumoMTA's
-- static setup does). The `provider_*` limits are refused.
local kumo = require 'kumo'
local utils = require 'policy-extras.policy_utils'

local mod = {}

local BLOCK_ONLY = {
  mx_rollup = true,
  replace_base = true,
  sources = true,
  automation = true,
  match = true,
}

local function options_of(block)
  local out = {}
  for k, v in pairs(block) do
    if not BLOCK_ONLY[k] then
      out[k] = v
    end
  end
  return out
end

local function check_options(file, label, block)
  for _, refused in ipairs { 'provider_connection_limit', 'provider_max_message_rate' } do
    if block[refused] ~= nil then
      error(
        string.format(
          '%s: %s: %s (a limit shared by every site of a provider) is not supported by Petrel yet',
          file,
          label,
          refused
        ),
        0
      )
    end
  end
  local ok, err = pcall(kumo.make_egress_path, options_of(block))
  if not ok then
    error(string.format('%s: %s: %s', file, label, err), 0)
  end
end

-- One block in the order files define them: kind is 'provider' or
-- 'domain'; the same name in a later file is another block, merged after.
local function add_block(blocks, file, kind, name, block)
  local label = kind == 'provider' and string.format('provider.%q', name)
    or string.format('[%q]', name)
  if type(block) ~= 'table' then
    error(string.format('%s: %s must be a table', file, label), 0)
  end
  check_options(file, label, block)
  local sources = {}
  for source, settings in pairs(block.sources or {}) do
    check_options(file, string.format('%s.sources.%q', label, source), settings)
    sources[source] = settings
  end
  local automation = {}
  for i, rule in ipairs(block.automation or {}) do
    if type(rule) ~= 'table' then
      error(string.format('%s: %s.automation[%d] must be a table', file, label, i), 0)
    end
    for key in pairs(rule) do
      if key ~= 'regex' and key ~= 'action' and key ~= 'duration' and key ~= 'trigger' then
        error(string.format('%s: %s.automation[%d]: unknown key %q', file, label, i, key), 0)
      end
    end
    local entry = {
      name = string.format('%s#%d', name, i),
      regex = rule.regex,
      action = rule.action,
      duration = rule.duration,
      trigger = rule.trigger,
    }
    if kind == 'provider' then
      entry.provider = block.match or {}
    else
      entry.domain = name
    end
    -- Checked now, so a bad rule names its file and block at setup.
    local ok, err = pcall(kumo.configure_shaping_automation_check, entry)
    if not ok then
      error(string.format('%s: %s.automation[%d]: %s', file, label, i, utils.clean_error(err)), 0)
    end
    table.insert(automation, entry)
  end
  table.insert(blocks, {
    kind = kind,
    name = name,
    rollup = block.mx_rollup ~= false,
    replace = block.replace_base == true,
    match = block.match,
    options = options_of(block),
    sources = sources,
    automation = automation,
  })
end

local function load(files)
  if type(files) ~= 'table' or #files == 0 then
    error('policy-extras.shaping: setup needs a list of data files', 0)
  end
  local blocks = {}
  for _, file in ipairs(files) do
    local ok, data = pcall(utils.load_json_or_toml_file, file)
    if not ok then
      error(string.format('policy-extras.shaping: %s', utils.clean_error(data)), 0)
    end
    for _, name in ipairs(utils.table_keys(data)) do
      if name == 'provider' then
        for _, provider in ipairs(utils.table_keys(data.provider)) do
          add_block(blocks, file, 'provider', provider, data.provider[provider])
        end
      else
        add_block(blocks, file, 'domain', name:lower(), data[name])
      end
    end
  end
  return blocks
end

local function ends_with(text, suffix)
  return suffix == '' or text:sub(-#suffix) == suffix
end

-- The MX host names of a site (Petrel's site is the hosts joined by ',').
local function site_hosts(site_name)
  local hosts = {}
  for host in site_name:gmatch '[^,]+' do
    table.insert(hosts, (host:lower():gsub('%.$', '')))
  end
  return hosts
end

local function provider_matches(match, routing_domain, hosts)
  local mx_rules = {}
  for _, rule in ipairs(match or {}) do
    if rule.DomainSuffix and ends_with(routing_domain, rule.DomainSuffix) then
      return true
    end
    if rule.MXSuffix or rule.HostName then
      table.insert(mx_rules, rule)
    end
  end
  if #mx_rules == 0 or #hosts == 0 then
    return false
  end
  -- Every MX host must match one of the MX rules.
  for _, host in ipairs(hosts) do
    local matched = false
    for _, rule in ipairs(mx_rules) do
      local suffix = rule.MXSuffix and rule.MXSuffix:lower():gsub('%.$', '')
      if
        (suffix and ends_with(host, suffix))
        or (rule.HostName and host == rule.HostName:lower():gsub('%.$', ''))
      then
        matched = true
        break
      end
    end
    if not matched then
      return false
    end
  end
  return true
end

local site_of = kumo.memoize(function(domain)
  local ok, mx = pcall(kumo.dns.lookup_mx, domain)
  if ok then
    return mx.site_name
  end
  return ''
end, { name = 'policy-extras.shaping.site', ttl = '5 minutes', capacity = 10000 })

local function resolve(blocks, routing_domain, egress_source, site_name)
  routing_domain = routing_domain:lower()
  local hosts = site_hosts(site_name)
  local params = {}
  local function merge(options)
    if options then
      utils.merge_into(options, params)
    end
  end
  local function apply(block, options)
    if block.replace then
      params = {}
    end
    merge(options)
  end
  local function site_block(b)
    return b.kind == 'domain'
      and b.rollup
      and b.name ~= 'default'
      and (b.name == routing_domain or site_of(b.name) == site_name)
  end
  local function domain_block(b)
    return b.kind == 'domain' and not b.rollup and b.name == routing_domain
  end
  local function provider(b)
    return b.kind == 'provider'
      and provider_matches(b.match, routing_domain, hosts)
  end
  for _, b in ipairs(blocks) do
    if b.kind == 'domain' and b.name == 'default' then
      apply(b, b.options)
    end
  end
  local steps = {
    { provider, 'options' },
    { provider, 'source' },
    { site_block, 'options' },
    { domain_block, 'options' },
    { site_block, 'source' },
    { domain_block, 'source' },
  }
  for _, step in ipairs(steps) do
    local selects, part = step[1], step[2]
    for _, b in ipairs(blocks) do
      if selects(b) then
        if part == 'options' then
          apply(b, b.options)
        else
          merge(b.sources[egress_source])
        end
      end
    end
  end
  return params
end

local function rules_of(blocks)
  local rules = {}
  for _, b in ipairs(blocks) do
    for _, rule in ipairs(b.automation) do
      table.insert(rules, rule)
    end
  end
  return rules
end

local function setup(self, files)
  local blocks = load(files)
  local rules = rules_of(blocks)
  if #rules > 0 then
    kumo.log_warn(
      string.format(
        'policy-extras.shaping: %d automation rule(s) are not applied by setup; use setup_with_automation',
        #rules
      )
    )
  end
  local helper = function(routing_domain, egress_source, site_name)
    return kumo.make_egress_path(
      resolve(blocks, routing_domain, egress_source, site_name)
    )
  end
  return helper
end

mod.setup = utils.setup_method(setup)

local AUTOMATION_OPTIONS = {
  publish = 'table',
  subscribe = 'table',
  extra_files = 'table',
  no_default_files = 'boolean',
}

local function setup_with_automation(self, options)
  options = options or {}
  for key, value in pairs(options) do
    local wanted = AUTOMATION_OPTIONS[key]
    if not wanted then
      error(string.format('policy-extras.shaping: setup_with_automation: unknown option %q', tostring(key)), 0)
    end
    if type(value) ~= wanted then
      error(string.format('policy-extras.shaping: setup_with_automation: %s must be a %s', key, wanted), 0)
    end
  end
  -- Petrel ships no default shaping file: the files are extra_files.
  local blocks = load(options.extra_files or {})
  local rules = rules_of(blocks)
  local shaper = {}
  function shaper.get_egress_path_config(routing_domain, egress_source, site_name)
    return kumo.make_egress_path(
      resolve(blocks, routing_domain, egress_source, site_name)
    )
  end
  -- KumoMTA publishes logs to its TSA daemon here; Petrel hands the rules
  -- to its own automation, which reads the log in-process.
  function shaper.setup_publish()
    kumo.configure_shaping_automation { rules = rules }
  end
  return shaper
end

mod.setup_with_automation = utils.setup_method(setup_with_automation)

return mod

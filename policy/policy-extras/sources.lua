-- policy-extras.sources: egress sources and pools from data files.
--
--   local sources = require 'policy-extras.sources'
--   sources:setup { '/opt/petrel/etc/policy/sources.toml' }
--
-- The files (TOML, or JSON by extension) hold `[source."name"]` tables of
-- kumo.make_egress_source options and `[pool."name"."source"]` tables with
-- an optional `weight` (1 unless given). Later files merge over earlier
-- ones. Every source is checked when setup runs, so a bad address or an
-- option Petrel does not support fails the policy load naming the file and
-- the key; `petrel validate` also checks that every pool names a defined
-- source.
local kumo = require 'kumo'
local utils = require 'policy-extras.policy_utils'

local mod = {}

local POOL_ENTRY_KEYS = { weight = true }

local fail = utils.fail

local function make_source(name, params)
  local spec = utils.merge({ name = name }, params)
  return kumo.make_egress_source(spec)
end

local function pool_entries(name, pool, where)
  local entries = {}
  for _, source in ipairs(utils.table_keys(pool)) do
    local entry = pool[source]
    if type(entry) ~= 'table' then
      fail(
        string.format(
          '%s: pool.%q.%q must be a table (with an optional weight)',
          where('pool', name),
          name,
          source
        )
      )
    end
    for key in pairs(entry) do
      if not POOL_ENTRY_KEYS[key] then
        fail(
          string.format(
            '%s: pool.%q.%q: unknown key %q (only weight is allowed)',
            where('pool', name),
            name,
            source,
            key
          )
        )
      end
    end
    local weight = entry.weight or 1
    if math.type(weight) ~= 'integer' or weight < 0 then
      fail(
        string.format(
          '%s: pool.%q.%q: weight must be a whole number of 0 or more, not %s',
          where('pool', name),
          name,
          source,
          tostring(weight)
        )
      )
    end
    table.insert(entries, { name = source, weight = weight })
  end
  return entries
end

local function setup(self, files)
  local data, where = utils.load_data_files(files, 'policy-extras.sources')
  for key in pairs(data) do
    if key ~= 'source' and key ~= 'pool' then
      fail(
        string.format(
          '%s: unknown top-level key %q (expected source and pool tables)',
          where(key),
          key
        )
      )
    end
  end
  local source_data = data.source or {}
  local pool_data = data.pool or {}
  local made_sources, made_pools = {}, {}
  for _, name in ipairs(utils.table_keys(source_data)) do
    local ok, made = pcall(make_source, name, source_data[name])
    if not ok then
      fail(
        string.format('%s: source.%q: %s', where('source', name), name, made)
      )
    end
    made_sources[name] = made
  end
  for _, name in ipairs(utils.table_keys(pool_data)) do
    local entries = pool_entries(name, pool_data[name], where)
    local ok, made = pcall(kumo.make_egress_pool, { name = name, entries = entries })
    if not ok then
      fail(string.format('%s: pool.%q: %s', where('pool', name), name, made))
    end
    made_pools[name] = made
  end

  kumo.on('get_egress_source', function(name)
    return made_sources[name]
  end)
  kumo.on('get_egress_pool', function(name)
    return made_pools[name]
  end)
  -- Petrel's own event: the names, so `petrel validate` can list them.
  kumo.on('petrel.egress_names', function()
    return {
      sources = utils.table_keys(source_data),
      pools = utils.table_keys(pool_data),
    }
  end)
  kumo.on('validate_config', function()
    for _, pool in ipairs(utils.table_keys(pool_data)) do
      for _, source in ipairs(utils.table_keys(pool_data[pool])) do
        if not made_sources[source] then
          kumo.log_error(
            string.format(
              '%s: pool.%q names source %q, which no source table defines',
              where('pool', pool),
              pool,
              source
            )
          )
          kumo.validation_failed()
        end
      end
    end
  end)

  self.data = data
  return self
end

mod.setup = utils.setup_method(setup)

return mod

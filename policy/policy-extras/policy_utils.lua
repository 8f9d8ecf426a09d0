-- policy-extras.policy_utils: small helpers the other policy-extras
-- modules and user policies share. Petrel's own implementation of the
-- interface KumoMTA documents.
local kumo = require 'kumo'

local mod = {}

-- Copy every key of `src` into `dest`, replacing what `dest` had.
function mod.merge_into(src, dest)
  if src then
    for k, v in pairs(src) do
      dest[k] = v
    end
  end
  return dest
end

-- A new table holding the keys of each argument in turn (later wins).
function mod.merge(...)
  local out = {}
  for i = 1, select('#', ...) do
    local t = select(i, ...)
    mod.merge_into(t, out)
  end
  return out
end

function mod.starts_with(text, prefix)
  return text:sub(1, #prefix) == prefix
end

function mod.ends_with(text, suffix)
  return suffix == '' or text:sub(-#suffix) == suffix
end

function mod.table_contains(list, value)
  for _, v in ipairs(list or {}) do
    if v == value then
      return true
    end
  end
  return false
end

function mod.table_keys(t)
  local keys = {}
  for k in pairs(t or {}) do
    table.insert(keys, k)
  end
  table.sort(keys, function(a, b)
    return tostring(a) < tostring(b)
  end)
  return keys
end

-- Raise when `a` and `b` differ, showing both (for tests in policies).
function mod.assert_eq(a, b, message)
  if a ~= b then
    local shown_a = type(a) == 'table' and kumo.json_encode(a) or tostring(a)
    local shown_b = type(b) == 'table' and kumo.json_encode(b) or tostring(b)
    error(
      string.format('%s: %s ~= %s', message or 'assert_eq', shown_a, shown_b),
      2
    )
  end
end

-- An error's text without the positions inside helpers and Lua's
-- "runtime error: " prefix, so it reads as the data file and key at fault.
function mod.clean_error(err)
  local text = tostring(err)
  text = text:gsub('\nstack traceback:.*$', '')
  text = text:gsub('runtime error: ', '')
  text = text:gsub('%[petrel%]/[%w_%-/]+%.lua:%d+: ', '')
  return text
end

-- Raise a data error: the message already names the file and the key.
function mod.fail(message)
  error(message, 0)
end

-- A helper's `setup(self, files)` as its method: an error (naming the data
-- file and key) is raised again at the policy line that called setup.
function mod.setup_method(setup)
  return function(self, files)
    local ok, result = pcall(setup, self, files)
    if not ok then
      error(mod.clean_error(result), 2)
    end
    return result
  end
end

-- Parse a data file by its extension: `.json` as JSON (comments allowed),
-- anything else as TOML.
function mod.load_json_or_toml_file(filename)
  if mod.ends_with(filename, '.json') then
    return kumo.json_load(filename)
  end
  return kumo.toml_load(filename)
end

-- Load each file of `files` in order and merge them one level deep: a
-- table at the top of a later file is merged into the same table of an
-- earlier one. Returns the merged data and, for each top-level table and
-- key below it, the file it last came from (for error messages).
function mod.load_data_files(files, what)
  if type(files) ~= 'table' or #files == 0 then
    error(string.format('%s: setup needs a list of data files', what), 0)
  end
  local data, origin = {}, {}
  for _, file in ipairs(files) do
    local ok, loaded = pcall(mod.load_json_or_toml_file, file)
    if not ok then
      error(string.format('%s: %s', what, mod.clean_error(loaded)), 0)
    end
    for section, value in pairs(loaded) do
      if type(value) == 'table' and type(data[section]) == 'table' then
        for k, v in pairs(value) do
          data[section][k] = v
          origin[section .. '\0' .. tostring(k)] = file
        end
      else
        data[section] = value
        origin[section] = file
        if type(value) == 'table' then
          for k in pairs(value) do
            origin[section .. '\0' .. tostring(k)] = file
          end
        end
      end
    end
  end
  local function where(section, key)
    if key == nil then
      return origin[section] or files[#files]
    end
    return origin[section .. '\0' .. tostring(key)]
      or origin[section]
      or files[#files]
  end
  return data, where
end

return mod

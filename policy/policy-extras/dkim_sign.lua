-- policy-extras.dkim_sign: DKIM signing driven by a data file in
-- KumoMTA's `dkim_data.toml` format.
--
--   local dkim_sign = require 'policy-extras.dkim_sign'
--   local dkim_signer = dkim_sign:setup { '/opt/petrel/etc/policy/dkim_data.toml' }
--   kumo.on('smtp_server_message_received', function(msg)
--     dkim_signer(msg) -- last, so nothing edits the message after signing
--   end)
--
-- `[base]` holds the defaults (selector, headers, over_sign, algo,
-- additional_signatures); `[domain."example.com"]` blocks match the domain
-- of the From header; `[signature."name"]` blocks, listed in
-- base.additional_signatures, add a signature for another domain, always
-- (`policy = "Always"`) or only when no domain block matched
-- (`policy = "OnlyIfMissingDomainBlock"`). A block's key is `filename`, or
-- /opt/kumomta/etc/dkim/DOMAIN/SELECTOR.key (KumoMTA's layout). `petrel
-- validate` loads every key named by the data and names the file of any
-- that cannot be used.
local kumo = require 'kumo'
local utils = require 'policy-extras.policy_utils'

local mod = {}

local fail = utils.fail

local BLOCK_OPTIONS = {
  selector = 'string',
  headers = 'table',
  algo = 'string',
  filename = 'string',
  over_sign = 'boolean',
  header_canonicalization = 'string',
  body_canonicalization = 'string',
  expiration = 'number',
  ttl = 'number',
}

local BASE_OPTIONS = utils.merge(BLOCK_OPTIONS, {
  additional_signatures = 'table',
})

local SIGNATURE_OPTIONS = utils.merge(BLOCK_OPTIONS, {
  domain = 'string',
  policy = 'string',
})

local VAULT = { vault_mount = true, vault_path_prefix = true, vault_key = true }

local POLICIES = { Always = true, OnlyIfMissingDomainBlock = true }

local function check_block(file, label, block, options)
  if type(block) ~= 'table' then
    fail(string.format('%s: %s must be a table', file, label))
  end
  for key, value in pairs(block) do
    if VAULT[key] then
      fail(
        string.format(
          '%s: %s: %s (keys from HashiCorp Vault) is documented by KumoMTA but not supported by Petrel yet',
          file,
          label,
          key
        )
      )
    end
    local wanted = options[key]
    if not wanted then
      fail(string.format('%s: %s: unknown option %q', file, label, key))
    end
    if type(value) ~= wanted then
      fail(string.format('%s: %s: %s must be a %s', file, label, key, wanted))
    end
  end
  if block.algo and block.algo ~= 'sha256' and block.algo ~= 'ed25519' then
    fail(
      string.format(
        '%s: %s: algo must be "sha256" or "ed25519", not %q',
        file,
        label,
        block.algo
      )
    )
  end
  if block.policy and not POLICIES[block.policy] then
    fail(
      string.format(
        '%s: %s: policy must be "Always" or "OnlyIfMissingDomainBlock", not %q',
        file,
        label,
        block.policy
      )
    )
  end
end

local function check(data, where)
  local base = data.base or {}
  check_block(where('base'), '[base]', base, BASE_OPTIONS)
  for domain, block in pairs(data.domain or {}) do
    check_block(
      where('domain', domain),
      string.format('[domain.%q]', domain),
      block,
      BLOCK_OPTIONS
    )
  end
  for name, block in pairs(data.signature or {}) do
    local label = string.format('[signature.%q]', name)
    check_block(where('signature', name), label, block, SIGNATURE_OPTIONS)
    if not block.domain then
      fail(string.format('%s: %s needs a domain', where('signature', name), label))
    end
  end
  for _, name in ipairs(base.additional_signatures or {}) do
    if not (data.signature or {})[name] then
      fail(
        string.format(
          '%s: [base]: additional_signatures names %q, which has no [signature.%q] block',
          where('base'),
          name,
          name
        )
      )
    end
  end
  for key in pairs(data) do
    if key ~= 'base' and key ~= 'domain' and key ~= 'signature' then
      fail(string.format('%s: unknown table [%s]', where(key), key))
    end
  end
end

-- The parameters of one signature: the block over the base defaults.
local function signer_params(base, block, domain)
  local merged = utils.merge(base, block)
  local selector = merged.selector
  if not selector then
    return nil, string.format('no selector for %s (set base.selector or the block\'s)', domain)
  end
  local headers = merged.headers or { 'From', 'To', 'Subject', 'Date' }
  local filename = merged.filename
    or string.format('/opt/kumomta/etc/dkim/%s/%s.key', domain, selector)
  return {
    algo = merged.algo or 'sha256',
    params = {
      domain = domain,
      selector = selector,
      headers = headers,
      key = filename,
      over_sign = merged.over_sign,
      header_canonicalization = merged.header_canonicalization,
      body_canonicalization = merged.body_canonicalization,
      expiration = merged.expiration,
      ttl = merged.ttl,
    },
  }
end

local function make_signer(spec)
  if spec.algo == 'ed25519' then
    return kumo.dkim.ed25519_signer(spec.params)
  end
  return kumo.dkim.rsa_sha256_signer(spec.params)
end

-- Every signature the data describes, for the deep check.
local function every_signature(data)
  local base = data.base or {}
  local out = {}
  for domain, block in pairs(data.domain or {}) do
    table.insert(out, { string.format('[domain.%q]', domain), base, block, domain })
  end
  for name, block in pairs(data.signature or {}) do
    table.insert(out, { string.format('[signature.%q]', name), base, block, block.domain })
  end
  return out
end

local function setup(self, files)
  local data, where = utils.load_data_files(files, 'policy-extras.dkim_sign')
  check(data, where)
  local base = utils.merge(data.base or {})
  local extra = base.additional_signatures or {}
  base.additional_signatures = nil

  kumo.on('validate_config', function()
    for _, entry in ipairs(every_signature(data)) do
      local label, block, domain = entry[1], entry[3], entry[4]
      local spec, err = signer_params(base, block, domain)
      local ok = spec ~= nil
      if ok then
        ok, err = pcall(make_signer, spec)
      end
      if not ok then
        kumo.log_error(
          string.format('policy-extras.dkim_sign: %s: %s', label, utils.clean_error(err))
        )
        kumo.validation_failed()
      end
    end
  end)

  return function(msg)
    local from = msg:from_header()
    local domain = from and from.domain and from.domain:lower()
    local block = domain and (data.domain or {})[domain]
    if block then
      local spec, err = signer_params(base, block, domain)
      if not spec then
        error('policy-extras.dkim_sign: ' .. err, 0)
      end
      msg:dkim_sign(make_signer(spec))
    end
    for _, name in ipairs(extra) do
      local sig = data.signature[name]
      if sig.policy ~= 'OnlyIfMissingDomainBlock' or not block then
        local spec, err = signer_params(base, sig, sig.domain)
        if not spec then
          error('policy-extras.dkim_sign: ' .. err, 0)
        end
        msg:dkim_sign(make_signer(spec))
      end
    end
  end
end

mod.setup = utils.setup_method(setup)

return mod

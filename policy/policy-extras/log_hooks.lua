-- policy-extras.log_hooks: deliver log records to another system (a
-- webhook, a queue) through Petrel's own queues, so none is lost while
-- that system is down.
--
--   local log_hooks = require 'policy-extras.log_hooks'
--   log_hooks:new_json {
--     name = 'webhook',
--     url = 'http://10.0.0.1:4242/log',
--     log_parameters = { headers = { 'Subject', 'X-Customer-ID' } },
--   }
--
-- `new { name, constructor, log_parameters, queue_config, batch_size,
-- batch_timeout }` is the general form: `constructor(domain, tenant,
-- campaign)` returns a connection object with `send(message)` (or
-- `send_batch(messages)` when batch_size > 1) and optionally `close()`.
-- Each hook configures `kumo.configure_log_hook` (in pre_init), answers
-- `should_enqueue_log_record` for its own name (never for records about
-- its own queue), and `get_queue_config` for its queue, a custom_lua queue
-- built by the `make.<name>` event. Call it before other helpers that
-- answer get_queue_config.
--
-- new_json posts each record as JSON (batches as a JSON array): a 2xx
-- answer delivers; 408, 429 and 5xx are retried with backoff; any other
-- 4xx is logged (a Bounce record of the hook's queue) and dropped; a
-- connection failure is retried.
local kumo = require 'kumo'
local utils = require 'policy-extras.policy_utils'

local mod = {}

local NEW_OPTIONS = {
  name = 'string',
  constructor = 'function',
  log_parameters = 'table',
  queue_config = 'table',
  batch_size = 'number',
  batch_timeout = 'string_or_number',
}

local JSON_OPTIONS = utils.merge(NEW_OPTIONS, {
  url = 'string',
  headers = 'table',
  basic_auth = 'table',
  timeout = 'string_or_number',
})
JSON_OPTIONS.constructor = nil

local function check(options, allowed, what)
  if type(options) ~= 'table' then
    error(string.format('%s needs a table of options', what), 3)
  end
  for key, value in pairs(options) do
    local wanted = allowed[key]
    if not wanted then
      error(string.format('%s: unknown option %q', what, tostring(key)), 3)
    end
    local kind = type(value)
    local ok = kind == wanted
      or (wanted == 'string_or_number' and (kind == 'string' or kind == 'number'))
    if not ok then
      error(string.format('%s: %s must be a %s', what, key, wanted:gsub('_', ' ')), 3)
    end
  end
  if type(options.name) ~= 'string' or options.name == '' then
    error(string.format('%s: name is required', what), 3)
  end
end

local function register(options)
  local name = options.name
  local log_parameters = utils.merge(options.log_parameters or {}, { name = name })
  kumo.on('pre_init', function()
    kumo.configure_log_hook(log_parameters)
  end)
  kumo.on('should_enqueue_log_record', function(msg, hook_name)
    if hook_name ~= name then
      return nil
    end
    local record = msg:get_meta 'log_record'
    -- Records of this hook's own deliveries would feed themselves.
    if record.queue == name then
      return false
    end
    msg:set_meta('queue', name)
    return true
  end)
  local protocol = {
    custom_lua = {
      constructor = 'make.' .. name,
      batch_size = options.batch_size,
      batch_timeout = options.batch_timeout,
    },
  }
  local queue_params = utils.merge({
    retry_interval = '1m',
    max_retry_interval = '20m',
    generate_bounces = false,
  }, options.queue_config or {}, { protocol = protocol })
  kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
    if domain == name then
      return kumo.make_queue_config(queue_params)
    end
    return nil
  end)
  kumo.on('make.' .. name, options.constructor)
end

function mod:new(options)
  check(options, NEW_OPTIONS, 'log_hooks:new')
  if type(options.constructor) ~= 'function' then
    error('log_hooks:new: constructor is required', 2)
  end
  register(options)
end

-- The disposition of a response: delivered, retried (raises a 4xx) or
-- given up (raises a 5xx), as the comment at the top describes.
local function settle(response)
  local status = response:status_code()
  local disposition =
    string.format('%d %s: %s', status, response:status_reason(), response:text())
  if response:status_is_success() then
    return disposition
  end
  if status == 408 or status == 429 or status >= 500 then
    kumo.reject(421, '4.4.2 webhook answered ' .. disposition)
  end
  kumo.reject(550, '5.6.0 webhook refused ' .. disposition)
end

function mod:new_json(options)
  check(options, JSON_OPTIONS, 'log_hooks:new_json')
  if type(options.url) ~= 'string' then
    error('log_hooks:new_json: url is required', 2)
  end
  local url = options.url
  local extra_headers = options.headers or {}
  local auth = options.basic_auth
  local timeout = options.timeout
  local function request(client, body)
    local req = client:post(url):header('Content-Type', 'application/json')
    for k, v in pairs(extra_headers) do
      req:header(k, v)
    end
    if auth then
      req:basic_auth(auth.user or auth[1], auth.password or auth[2])
    end
    return settle(req:body(body):send())
  end
  local params = utils.merge(options)
  params.url, params.headers, params.basic_auth, params.timeout = nil, nil, nil, nil
  params.constructor = function(domain, tenant, campaign)
    local client = kumo.http.build_client { timeout = timeout }
    local connection = {}
    function connection:send(message)
      return request(client, message:get_data())
    end
    function connection:send_batch(messages)
      local payload = {}
      for _, msg in ipairs(messages) do
        table.insert(payload, msg:get_meta 'log_record')
      end
      return request(client, kumo.json_encode(payload))
    end
    function connection:close()
      client:close()
    end
    return connection
  end
  register(params)
end

return mod

-- A policy written the way KumoMTA's user guide writes one: the
-- policy-extras helpers set up at the top, data in TOML files next to it.
-- Run from the repository root (the data file paths are relative to it):
--   make run POLICY=examples/kumomta-helpers/init.lua
local kumo = require 'kumo'
local sources = require 'policy-extras.sources'
local queue_module = require 'policy-extras.queue'
local listener_domains = require 'policy-extras.listener_domains'

local HERE = 'examples/kumomta-helpers/'

sources:setup { HERE .. 'sources.toml' }
local queue_helper = queue_module:setup { HERE .. 'queues.toml' }

kumo.on('init', function()
  kumo.define_spool {
    name = 'data',
    path = '/tmp/petrel-kumomta-helpers/data',
    kind = 'RocksDB',
  }
  kumo.define_spool {
    name = 'meta',
    path = '/tmp/petrel-kumomta-helpers/meta',
    kind = 'RocksDB',
  }
  kumo.configure_local_logs {
    log_dir = '/tmp/petrel-kumomta-helpers/logs',
    max_segment_duration = '1 minute',
  }
  kumo.start_http_listener {
    listen = '127.0.0.1:8000',
    trusted_hosts = { '127.0.0.1', '::1' },
  }
  kumo.start_esmtp_listener {
    listen = '127.0.0.1:2025',
    hostname = 'mail.example.com',
    relay_hosts = { '127.0.0.1' },
  }
end)

kumo.on(
  'get_listener_domain',
  listener_domains:setup { HERE .. 'listener_domains.toml' }
)

kumo.on('smtp_server_message_received', function(msg)
  local failed = msg:check_fix_conformance('NON_CANONICAL_LINE_ENDINGS', '')
  if failed then
    kumo.reject(552, string.format('5.6.0 %s', failed))
  end
  queue_helper:apply(msg)
end)

kumo.on('http_message_generated', function(msg)
  queue_helper:apply(msg)
end)

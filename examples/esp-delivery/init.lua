-- What a sending platform runs around every delivery: bounce
-- classification, notifications to senders, delivery events to a webhook,
-- out-of-band bounces and complaints read back, shaping that reacts to a
-- provider's block messages, and a new IP on a warm-up plan.
-- Run from the repository root (the data file paths are relative to it):
--   make run POLICY=examples/esp-delivery/init.lua
local kumo = require 'kumo'
local log_hooks = require 'policy-extras.log_hooks'
local shaping = require 'policy-extras.shaping'

local HERE = 'examples/esp-delivery/'

-- Every delivery event, posted as JSON to the platform's webhook, through
-- Petrel's own queues: retried while the endpoint is down, in order.
log_hooks:new_json {
  name = 'webhook',
  url = 'http://127.0.0.1:4242/events',
  batch_size = 50,
  batch_timeout = '1s',
  log_parameters = { headers = { 'Subject', 'X-Customer-ID' } },
}

-- Shaping with automation rules (a block message suspends that IP at that
-- provider for a while), run inside Petrel.
local shaper = shaping:setup_with_automation {
  extra_files = { HERE .. 'shaping.toml' },
}

kumo.on('init', function()
  kumo.define_spool { name = 'data', path = '/tmp/petrel-esp-delivery/data' }
  kumo.configure_local_logs { log_dir = '/tmp/petrel-esp-delivery/logs' }
  kumo.configure_bounce_classifier {
    files = { '[petrel]/bounce_classifier/default.toml' },
  }
  kumo.start_esmtp_listener {
    listen = '127.0.0.1:2025',
    relay_hosts = { '127.0.0.1' },
  }
  kumo.start_http_listener { listen = '127.0.0.1:8000' }

  kumo.define_egress_source {
    name = 'ip-2',
    source_address = '127.0.0.2',
    ehlo_domain = 'mta2.esp.example',
  }
  -- A new IP: at most 50 messages today, 100 tomorrow, ... then no cap.
  kumo.define_egress_source {
    name = 'ip-3',
    source_address = '127.0.0.3',
    ehlo_domain = 'mta3.esp.example',
    warmup = { start = '2026-12-01', daily = { 50, 100, 250, 500, 1000, 2500, 5000 } },
  }
  -- Mail ip-3 may not take today leaves from ip-2.
  kumo.define_egress_pool {
    name = 'bulk',
    overflow = 'spill',
    entries = { { name = 'ip-2', weight = 2 }, { name = 'ip-3', weight = 1 } },
  }
  shaper.setup_publish()
end)

kumo.on('get_egress_path_config', shaper.get_egress_path_config)

-- Bounces and complaints come back to these domains: logged as OOB and
-- Feedback records tied to the message sent, then dropped.
kumo.on('get_listener_domain', function(domain)
  if domain == 'bounces.esp.example' then
    return kumo.make_listener_domain { log_oob = 'LogThenDrop' }
  elseif domain == 'fbl.esp.example' then
    return kumo.make_listener_domain { log_arf = 'LogThenDrop' }
  end
end)

kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {
    egress_pool = 'bulk',
    -- Everything to the local sink (`make sink`), for trying it out.
    protocol = { smtp = { mx_list = { '127.0.0.1:2526' } } },
    -- Tell senders of bounces and expiries (RFC 3464), and of mail still
    -- waiting after four hours.
    generate_bounces = true,
    generate_delay_dsn = true,
    delay_dsn_retry_interval = '4 hours',
  }
end)

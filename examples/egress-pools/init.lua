-- Two customers on their own IPs, and everyone else on a weighted shared
-- pool. Run it from the repository root (paths below are relative to it);
-- see README.md.
local kumo = require 'kumo'

-- Envelope-sender domain → egress pool (Momentum's Match_Domain).
local POOL_BY_SENDER_DOMAIN = {
  ['customer-a.example'] = 'customer-a',
  ['customer-b.example'] = 'customer-b',
}

kumo.on('init', function()
  kumo.define_spool { name = 'data', path = 'data/egress-pools/spool' }
  kumo.configure_local_logs { log_dir = 'data/egress-pools/logs' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:2025', relay_hosts = { '127.0.0.1' } }
  -- The console (http://127.0.0.1:8000/) and the API the petrel commands use.
  kumo.start_http_listener { listen = '127.0.0.1:8000', trusted_hosts = { '127.0.0.1' } }

  -- One source per IP, each with the EHLO name its PTR record would carry.
  -- 127.0.0.2 … 127.0.0.5 are loopback on Linux, so this runs anywhere.
  kumo.define_egress_source { name = 'a-1', source_address = '127.0.0.2', ehlo_domain = 'mta-a1.example.net' }
  kumo.define_egress_source { name = 'b-1', source_address = '127.0.0.3', ehlo_domain = 'mta-b1.example.net' }
  kumo.define_egress_source { name = 'shared-1', source_address = '127.0.0.4', ehlo_domain = 'mta-s1.example.net' }
  kumo.define_egress_source { name = 'shared-2', source_address = '127.0.0.5', ehlo_domain = 'mta-s2.example.net' }

  -- Each customer's reputation lives on its own address.
  kumo.define_egress_pool { name = 'customer-a', entries = { { name = 'a-1' } } }
  kumo.define_egress_pool { name = 'customer-b', entries = { { name = 'b-1' } } }

  -- Everyone else shares two addresses; shared-2 is warmed up and takes
  -- three messages for every one on shared-1.
  kumo.define_egress_pool {
    name = 'shared',
    entries = { { name = 'shared-1', weight = 1 }, { name = 'shared-2', weight = 3 } },
  }
end)

kumo.on('smtp_server_message_received', function(msg, conn_meta)
  local pool = POOL_BY_SENDER_DOMAIN[msg:sender().domain]
  if pool then
    msg:set_meta('egress_pool', pool)
  end
end)

kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {
    -- Messages with no pool of their own go to the shared pool.
    egress_pool = 'shared',
    retry_interval = '1m',
    -- Everything goes to the local sink started by `make sink`.
    protocol = { smtp = { mx_list = { '127.0.0.1:2526' } } },
  }
end)

-- Petrel's shipped policy: a working starting point on a fresh machine.
--
-- It listens on loopback only, keeps its spool and logs under ./data, and
-- delivers through the built-in `default` egress source (the machine's own
-- address). See examples/egress-pools for sources, pools and per-customer
-- routing.
local kumo = require 'kumo'

kumo.on('init', function()
  -- Where messages live until their final outcome. Meta and data may share
  -- one RocksDB directory; the 250 reply waits for a synced write.
  kumo.define_spool { name = 'data', path = 'data/spool' }
  kumo.define_spool { name = 'meta', path = 'data/spool' }

  -- One JSON record per message event (Reception, Delivery, Bounce, ...).
  kumo.configure_local_logs { log_dir = 'data/logs' }
  -- Failed attempts get a bounce_classification (InvalidRecipient,
  -- SpamBlock, QuotaIssues, ...) from the shipped rules.
  kumo.configure_bounce_classifier {
    files = { '[petrel]/bounce_classifier/default.toml' },
  }

  -- Loopback only: only local clients may inject, and they may relay.
  kumo.start_esmtp_listener {
    listen = '127.0.0.1:2025',
    relay_hosts = { '127.0.0.1', '::1' },
  }

  -- Injection, admin API and metrics; loopback clients are trusted.
  kumo.start_http_listener { listen = '127.0.0.1:8000' }
end)

-- Per-queue settings. Uncomment `mx_list` to send everything to a smart host
-- such as a local test sink (`host:port` is allowed).
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {
    retry_interval = '20m',
    max_age = '7 days',
    -- protocol = { smtp = { mx_list = { '127.0.0.1:2526' } } },
  }
end)

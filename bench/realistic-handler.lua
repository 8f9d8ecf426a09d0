-- The reception handler of bench/run.sh's petrel+lua setup and of the
-- "bench policy" variant of `cargo bench -p petrel-lua --bench events`:
-- sender domain to tenant and pool through a Lua table, one header added.
local tenants = {
  ['sender.example'] = { tenant = 'acme', pool = 'bench' },
  ['other.example'] = { tenant = 'globex', pool = 'bench' },
}
kumo.on('smtp_server_message_received', function(msg)
  local t = tenants[msg:sender().domain]
  if t then
    msg:set_meta('tenant', t.tenant)
    msg:set_meta('egress_pool', t.pool)
  end
  msg:prepend_header('X-Bench-Stream', 'transactional')
end)

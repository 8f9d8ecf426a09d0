#!/usr/bin/env bash
# Checks the OpenAPI document against a live Petrel with schemathesis: every
# documented operation is fuzzed, and responses must use documented status
# codes, content types and schemas, and never fail with 5xx.
#
#   tests/openapi/schemathesis.sh PATH/TO/petrel
set -euo pipefail
PETREL=${1:?usage: schemathesis.sh PATH/TO/petrel}
if ! python3 -c 'import schemathesis' 2>/dev/null; then
  echo "installing schemathesis from PyPI"
  python3 -m pip install -q schemathesis
fi
# Call its entry point through python3, so a fresh install works even where
# the console script is not on PATH yet (pyenv shims, ~/.local/bin).
schemathesis() { python3 -c 'import sys; from schemathesis.cli import schemathesis; sys.argv[0] = "schemathesis"; schemathesis()' "$@"; }
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$dir/init.lua" <<LUA
local kumo = require 'kumo'
kumo.on('init', function()
  kumo.define_spool { name = 'data', path = '$dir/spool' }
  kumo.configure_local_logs { log_dir = '$dir/logs' }
  kumo.start_http_listener { listen = '127.0.0.1:$port' }
end)
kumo.on('http_server_validate_auth_bearer', function(token)
  return token == 'schemathesis-token'
end)
-- Mail goes to a port where nothing listens: it stays queued, never leaves.
kumo.on('get_queue_config', function()
  return kumo.make_queue_config { protocol = { smtp = { mx_list = { '127.0.0.1:9' } } } }
end)
LUA
"$PETREL" serve --policy "$dir/init.lua" >"$dir/petrel.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do
  (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
  sleep 0.1
done
# Authentication itself is covered by tests/e2e/http.rs; here every request
# carries a valid token so the operations themselves are exercised.
schemathesis run "http://127.0.0.1:$port/api-docs/openapi.json" \
  -H "Authorization: Bearer schemathesis-token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-examples 25 --seed 1 --no-color

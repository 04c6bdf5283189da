#!/usr/bin/env bash
# Builds trawl and runs `trawl standalone` on the example configuration: it scrapes itself
# and a local node exporter, stores into ./data/ and serves the Prometheus API on :9090.
# Extra arguments go to trawl (e.g. --web.enable-lifecycle). Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. scripts/env.sh
cargo build --locked --release -p trawl

config=deploy/examples/standalone.yml
"$CARGO_TARGET_DIR/release/trawl" check config "$config"

# The example scrapes localhost:9100: start the Debian node exporter there unless something
# already listens (e.g. the packaged service, or a previous run of this script).
exporter=/usr/bin/prometheus-node-exporter
if [ -x "$exporter" ] && ! (exec 3<>/dev/tcp/127.0.0.1/9100) 2>/dev/null; then
  log="${TMPDIR:-/tmp}/trawl-node-exporter.log"
  echo "run: starting $exporter on :9100 (log: $log)"
  nohup "$exporter" --web.listen-address=127.0.0.1:9100 >"$log" 2>&1 &
fi

exec "$CARGO_TARGET_DIR/release/trawl" standalone --config.file="$config" "$@"

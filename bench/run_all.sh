#!/usr/bin/env bash
# Runs the alkomd benchmarks in sequence: decode throughput, end-to-end latency, idle daemon.
# Each prints its table (or, with --json, one JSON object); arguments are passed to all three.
#
#   bench/run_all.sh                              # inside the project's venv
#   PYTHON=/work/venv/bin/python bench/run_all.sh # or name the venv's interpreter
#
# Takes about 7 minutes on 2 vCPUs. Keep the machine otherwise idle while it runs.
set -u
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-python3}
if ! "$py" -c "import alkomd.daemon, alkomd.drivers" 2>/dev/null; then
  echo "run_all.sh: $py cannot import alkomd; activate the project's venv or set PYTHON=/path/to/venv/bin/python" >&2
  exit 2
fi
failed=()
for script in bench_decode.py bench_e2e.py bench_idle.py bench_jurisdictions.py bench_recommend.py bench_calls.py bench_ingest.py bench_udp.py bench_fleetsync.py bench_broker.py bench_modbus.py bench_sniff.py bench_outbox.py bench_tetra_phones.py bench_lrrp.py bench_takeover.py bench_standby.py bench_history.py bench_console.py; do
  echo "=== $script ($(date -u +%H:%M:%S) UTC) ===" >&2
  "$py" "$here/$script" "$@" || failed+=("$script")
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "run_all.sh: failed: ${failed[*]}" >&2
  exit 1
fi

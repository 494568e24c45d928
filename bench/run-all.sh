#!/bin/bash
# run-all.sh - every kts benchmark in one run: host throughput (wrk), handshakes
# (handshakes.sh), memory per idle connection, and the kernel-TLS VM group
# (vm-serve.sh). Writes results.json, results.md and ratios.png per run.
#
#   bench/run-all.sh [--quick] [--out DIR] [--build DIR] [--vm-build DIR] [--groups LIST]
#
# Default out: bench/results/<timestamp>/. Builds nothing; see bench/README.md.
exec python3 "$(dirname "$0")/run_all.py" "$@"

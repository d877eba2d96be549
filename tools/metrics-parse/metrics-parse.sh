#!/usr/bin/env bash
# Reads a service's /metrics with the official Prometheus Python client's text-format
# parser (`prometheus-client` from PyPI, pinned), installed into .data/venv-metrics the
# first time.
#
#   tools/metrics-parse/metrics-parse.sh URL
#
# Prints one JSON document: {"families": {name: type}, "samples": [[name, {labels}, value]]}.
# Exits non-zero when the URL does not answer 200 or the text does not parse.
set -euo pipefail

PROMETHEUS_CLIENT_VERSION=0.26.0

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${METRICS_PARSE_VENV:-$root/.data/venv-metrics}"
python="$venv/bin/python"

source "$root/tools/lib/pinned-venv.sh"
pinned_venv "$venv" prometheus-client "$PROMETHEUS_CLIENT_VERSION"

exec "$python" "$root/tools/metrics-parse/parse.py" "$@"

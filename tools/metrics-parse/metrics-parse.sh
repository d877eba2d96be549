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

# Tests running side by side may call this at once: one installs, the others wait for it.
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
installed="$("$python" -c 'import importlib.metadata as m; print(m.version("prometheus-client"))' 2>/dev/null || true)"
if [[ "$installed" != "$PROMETHEUS_CLIENT_VERSION" ]]; then
    echo "metrics-parse: installing prometheus-client $PROMETHEUS_CLIENT_VERSION into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "prometheus-client==$PROMETHEUS_CLIENT_VERSION" >&2
fi
exec 9>&-

exec "$python" "$root/tools/metrics-parse/parse.py" "$@"

#!/usr/bin/env bash
# An independent MCP client for chat-api's MCP endpoint: the official Python `mcp` SDK
# (from PyPI, pinned), installed into .data/venv-mcp the first time.
#
#   tools/mcp-client/mcp-client.sh [--mode legacy|auto] URL TOKEN COMMAND [ARGS...]
#
# URL: the MCP endpoint (http://127.0.0.1:3000/mcp); TOKEN: a bearer token, for instance
# from `cargo xtask token alice` ("" sends none). COMMAND:
#   tools                 list the tools with their schemas
#   call NAME [JSON]      call one tool with a JSON object of arguments
#   scenario              initialize, list the tools and call each one on a fresh task
# Prints one JSON document on stdout; exits non-zero when the server refuses the client.
# `--mode legacy` (default) opens with the `initialize` handshake; `auto` lets the SDK
# negotiate, preferring the stateless 2026-07-28 protocol. MCP_CLIENT_VENV overrides where
# the SDK is installed.
set -euo pipefail

MCP_VERSION=2.3.0

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${MCP_CLIENT_VENV:-$root/.data/venv-mcp}"
python="$venv/bin/python"

source "$root/tools/lib/pinned-venv.sh"
pinned_venv "$venv" mcp "$MCP_VERSION"

exec "$python" "$root/tools/mcp-client/client.py" "$@"

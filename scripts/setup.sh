#!/usr/bin/env bash
# Set-up of a fresh machine (idempotent): a virtual environment in .venv with the project, its
# test dependencies and the client (its own distribution, in clients/). torch comes first,
# pinned, so that pip takes the CPU build on disk rather than the registry's CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e '.[dev]' -e ./clients

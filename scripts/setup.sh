#!/usr/bin/env bash
# One-time set-up of a fresh machine: a virtual environment in .venv with the project and its
# test dependencies. torch comes first, pinned, so that pip takes the CPU build on disk rather
# than the registry's CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e '.[dev]'

#!/usr/bin/env bash
# The test suite on the newest releases: what a plain `pip install` of the project gets today,
# where .venv is held to constraints.txt. A separate virtual environment, .venv-latest, is made
# afresh by scripts/setup.sh without the lock (the newest releases that pyproject.toml's ranges
# and setup.sh's pins allow), then the README's test command runs in it. The framework
# environments are the usual ones, each held to its own lock. Arguments go to pytest (default:
# the whole suite):
#
#   bash scripts/test-latest.sh                    # everything (as long as the README's command)
#   bash scripts/test-latest.sh tests/server -x    # a part
#
# What fails here and passes under the lock is a new release that breaks the project: fix the
# code (or bound the range in pyproject.toml), then refresh the lock with scripts/lock.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-latest
rm -rf "$VENV"  # afresh: pip does not upgrade what an old environment already has
VENV="$VENV" CONSTRAINTS= bash scripts/setup.sh
echo "test-latest.sh: installed here, not in constraints.txt (newer or new):"
"$VENV/bin/python" -m pip freeze --exclude-editable | sed -E 's/^([^=#]+==[^+]+)\+.*$/\1/' \
    | LC_ALL=C sort | LC_ALL=C comm -13 <(grep -v '^#' constraints.txt | LC_ALL=C sort) - \
    | sed 's/^/    /'
exec "$VENV/bin/python" -m pytest "$@"

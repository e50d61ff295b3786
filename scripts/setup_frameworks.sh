#!/usr/bin/env bash
# The voice-agent frameworks that tests/frameworks/ runs against the server, each in its own
# virtual environment so that none of their dependencies can disturb the core's (.venv):
#   .venv-pipecat  pipecat-ai[openai]                        (OpenAIRealtimeLLMService)
#   .venv-livekit  livekit-agents + livekit-plugins-openai   (openai.realtime.RealtimeModel)
#   .venv-agents   openai-agents                             (RealtimeAgent / RealtimeRunner)
# Every package is pinned in tests/frameworks/requirements/<name>.txt, each venv's lock (its
# `pip freeze`; `bash scripts/lock.sh frameworks` makes them anew from the newest releases of the
# `pip install` named on their first line). Idempotent: a venv whose lock has not changed since
# its last install is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
for name in pipecat livekit agents; do
    venv=".venv-$name"
    requirements="tests/frameworks/requirements/$name.txt"
    stamp="$venv/.requirements.sha256"
    wanted="$(sha256sum "$requirements" | cut -d' ' -f1)"
    if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$wanted" ]; then
        continue
    fi
    [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install -q -r "$requirements"
    echo "$wanted" > "$stamp"
done

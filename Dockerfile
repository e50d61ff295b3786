# The server on a GPU: the decoder on vLLM (`--engine vllm`, the `vllm` extra: vLLM's CUDA build,
# which brings PyPI's CUDA torch), our encoder, adaptor and speech in the same process. NOT yet
# built or run by us: our machines have no Docker engine and no GPU. Treat it as a starting point
# and report what breaks.
#
#   docker build -t step-realtime .
#   docker run --rm --gpus all --ipc=host -p 8000:8000 -v /models/Step-Audio-R1:/model \
#       -e STEP_REALTIME_API_KEYS=sk-change-me step-realtime --model /model --tensor-parallel-size 4
#
# One replica spans the GPUs given to it (tensor parallel, see docs/scaling.md); `--ipc=host`
# gives vLLM's worker processes the shared memory they talk through. Without a GPU, run the
# torch engine instead: append `--engine torch`. With API keys set the server binds 0.0.0.0;
# without them it refuses to leave loopback.
FROM python:3.11-slim

WORKDIR /app
# libsndfile for soundfile; espeak-ng itself ships inside the espeakng-loader wheel. gcc and
# the C headers: Triton (under vLLM) compiles small launcher stubs when it first runs.
RUN apt-get update && apt-get install -y --no-install-recommends libsndfile1 gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md constraints.txt ./
COPY server ./server
COPY streaming ./streaming
COPY tts ./tts
# vLLM's CUDA build pins its torch (PyPI's default wheel for Linux carries CUDA); the plugin
# entry point that registers our model with vLLM comes with the package. Every install is held
# to constraints.txt, the versions the test suite passed with (scripts/lock.sh). The lock is made
# with vLLM's CPU build: the CUDA build's own extra dependencies are not in it and come at their
# newest allowed release; should one of them need another version of a locked package, pip
# names the conflict, and the lock is the place to settle it.
# The turn detectors' model files come as dependencies: Silero VAD (the default classifier) with
# the package, Smart Turn (semantic_vad) with the `semantic` extra.
RUN pip install --no-cache-dir -c constraints.txt '.[vllm,semantic]'

EXPOSE 8000
ENTRYPOINT ["step-realtime", "serve", "--port", "8000", "--engine", "vllm"]

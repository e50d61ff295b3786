# The server in a container. NOT yet built or run by our CI (its machines have no Docker engine):
# treat it as a starting point and report what breaks.
#
#   docker build -t step-realtime .
#   docker run --rm -p 8000:8000 -e STEP_REALTIME_API_KEYS=sk-change-me step-realtime
#   docker run --rm --gpus all -p 8000:8000 -v /models/Step-Audio-R1:/model \
#       -e STEP_REALTIME_API_KEYS=sk-change-me step-realtime --model /model
#
# With API keys set the server binds 0.0.0.0; without them it refuses to leave loopback.
FROM python:3.11-slim

WORKDIR /app
# libsndfile for soundfile; espeak-ng itself ships inside the espeakng-loader wheel.
RUN apt-get update && apt-get install -y --no-install-recommends libsndfile1 \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY server ./server
COPY streaming ./streaming
COPY tts ./tts
# PyPI's default torch wheel for Linux carries CUDA, which the GPU image needs.
RUN pip install --no-cache-dir .

EXPOSE 8000
ENTRYPOINT ["step-realtime", "serve", "--port", "8000"]

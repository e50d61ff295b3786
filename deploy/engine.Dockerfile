# The engine tier for `--engine remote`: stock vLLM (its CUDA image) with this project installed
# beside it, so that vLLM finds the plugin that registers StepAudio2ForCausalLM. --no-deps: the
# plugin needs only torch, numpy and transformers, which vLLM's image has; vLLM's own versions
# stay. NOT built or run by us (no Docker engine and no GPU here): a starting point.
FROM vllm/vllm-openai:latest
WORKDIR /src
COPY pyproject.toml README.md ./
COPY server ./server
COPY streaming ./streaming
COPY tts ./tts
RUN pip install --no-cache-dir --no-deps .

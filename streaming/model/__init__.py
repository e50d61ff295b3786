"""Step-Audio 2 / Step-Audio-R1 in plain PyTorch: checkpoint format, model, features, prompts.

- `config`: `StepAudio2Config` from a checkpoint's config.json; `CheckpointError`.
- `frontend`: `log_mel` (16 kHz -> 128-bin log-mel, StepFun's recipe), `split_chunks` (25 s).
- `audio_encoder`: `AudioEncoder`, `Adaptor`, `audio_token_count`.
- `modeling`: `StepAudio2ForCausalLM` (encoder, adapter, Qwen2 `model`, `lm_head`).
- `tokens`: `load_tokenizer`, `SpecialTokens` (ids read from the checkpoint).
- `checkpoint`: `load_checkpoint(path, dtype, device) -> LoadedModel`.
- `prompt`: `PromptBuilder`, `Message`, `audio_message` -> `streaming.engine.base.Prompt`.
- `sizes`: `ModelSizes` and every preset (`TINY`, `BENCH50M`, `ARITH`, ...).
- `writer`: `write_checkpoint` (random weights, real format) of a `ModelSizes` or a preset.
"""

# The rate of every audio the model hears (its front end, the turn detectors, the wire decoders).
# Here, not in `frontend`, so that light modules can read it without importing torch.
SAMPLE_RATE = 16_000

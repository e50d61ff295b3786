"""StepFun's special tokens as text: what the prompt builder writes and the parsers look for.

Their ids come from each checkpoint's tokenizer (`streaming.model.tokens`); the strings live
here, apart from the tokenizer, so that code which only matches tags (the tool-call parser, the
protocol) imports neither transformers nor torch.
"""

BOT = "<|BOT|>"
EOT = "<|EOT|>"
AUDIO_START = "<audio_start>"
AUDIO_PATCH = "<audio_patch>"
AUDIO_END = "<audio_end>"
THINK = "<think>"
THINK_END = "</think>"
TTS_START = "<tts_start>"
TTS_END = "<tts_end>"
TOOL_CALL = "<tool_call>"
TOOL_CALL_END = "</tool_call>"

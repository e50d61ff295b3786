"""The Step-Audio 2 / R1 decoder as a vLLM model that takes precomputed audio embeddings.

Our server runs the audio encoder and the adaptor itself (incrementally, while the user speaks)
and hands vLLM their output rows. In vLLM's terms this is a multimodal model whose `audio`
items arrive as embeddings (`enable_mm_embeds=True`, `limit_mm_per_prompt={"audio": 0}`: no
audio tower is built). The prompt stays token ids throughout, with one `<audio_patch>` id per
audio row exactly as our prompt builder writes it, so that vLLM's automatic prefix caching keys
every block by its token ids (and, where it holds audio, by that audio item's content hash) and
a fork served as a new request reuses the cached blocks of its source.

One audio item is one run of consecutive `<audio_patch>` positions (one <= 25 s chunk). The
engine sends each run as a single `<audio_patch>` id and the processor's prompt update expands
the i-th one into the i-th item's run (as vLLM's own audio models expand their placeholder), so
the engine core sees exactly our token ids and records where the rows go.

Weights are read from the checkpoint directory the torch engine loads: `model.*` and
`lm_head.*` go to vLLM's own Qwen2 decoder, `encoder.*` and `adapter.*` are skipped.
Registered by `streaming.engine.vllm_plugin.register` (a vLLM plugin entry point).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import BatchFeature
from vllm.config import VllmConfig
from vllm.config.multimodal import MultiModalDummyOptions
from vllm.inputs import MultiModalDataDict
from vllm.model_executor.models.interfaces import MultiModalEmbeddings, SupportsMultiModal
from vllm.model_executor.models.utils import (
    AutoWeightsLoader,
    WeightsMapper,
    init_vllm_registered_model,
    maybe_prefix,
)
from vllm.multimodal import MULTIMODAL_REGISTRY
from vllm.multimodal.inputs import MultiModalFieldConfig, MultiModalKwargsItems
from vllm.multimodal.parse import AudioEmbeddingItems, MultiModalDataItems
from vllm.multimodal.processing import (
    BaseDummyInputsBuilder,
    BaseMultiModalProcessor,
    BaseProcessingInfo,
    PromptReplacement,
    PromptUpdate,
)
from vllm.sequence import IntermediateTensors

from streaming.engine.vllm_plugin import MAX_ROWS_PER_ITEM
from streaming.model.tokens import SpecialTokens, load_tokenizer

# Checkpoint weights that vLLM does not hold: the server runs the encoder and the adaptor.
SERVER_SIDE_PREFIXES = ("encoder.", "adapter.")


@functools.cache
def audio_patch_id(checkpoint: str) -> int:
    """The `<audio_patch>` id of a checkpoint, from its own tokenizer files (vLLM runs without
    a tokenizer here: prompts are token ids)."""
    path = Path(checkpoint)
    return SpecialTokens.from_checkpoint(path, load_tokenizer(path)).audio_patch


class StepAudio2ProcessingInfo(BaseProcessingInfo):
    def get_supported_mm_limits(self) -> Mapping[str, int | None]:
        return {"audio": None}

    def get_mm_max_tokens_per_item(
        self, seq_len: int, mm_counts: Mapping[str, int] | None = None
    ) -> Mapping[str, int]:
        return {"audio": MAX_ROWS_PER_ITEM}

    @property
    def audio_patch_id(self) -> int:
        return audio_patch_id(self.ctx.model_config.model)


class StepAudio2DummyInputs(BaseDummyInputsBuilder[StepAudio2ProcessingInfo]):
    """Profiling inputs: zero rows of the decoder's width (audio arrives as embeddings only)."""

    def get_dummy_text(self, mm_counts: Mapping[str, int]) -> str:
        return ""

    def get_dummy_mm_data(
        self,
        seq_len: int,
        mm_counts: Mapping[str, int],
        mm_options: MultiModalDummyOptions,
    ) -> MultiModalDataDict:
        count = mm_counts.get("audio", 0)
        if not count:
            return {}
        hidden = self.info.ctx.model_config.get_hidden_size()
        return {"audio": [torch.zeros(MAX_ROWS_PER_ITEM, hidden) for _ in range(count)]}


class StepAudio2EmbedsProcessor(BaseMultiModalProcessor[StepAudio2ProcessingInfo]):
    """Audio items are embedding rows already; each maps to its own run of `<audio_patch>`."""

    requires_tokenizer = False  # prompts arrive as token ids

    def _get_mm_fields_config(
        self, hf_inputs: BatchFeature, hf_processor_mm_kwargs: Mapping[str, object]
    ) -> Mapping[str, MultiModalFieldConfig]:
        return {"audio_embeds": MultiModalFieldConfig.batched("audio")}

    def _get_prompt_updates(
        self,
        mm_items: MultiModalDataItems,
        hf_processor_mm_kwargs: Mapping[str, object],
        out_mm_kwargs: MultiModalKwargsItems,
    ) -> Sequence[PromptUpdate]:
        patch = self.info.audio_patch_id
        items = mm_items.get_items("audio", AudioEmbeddingItems) if "audio" in mm_items else None

        def run(item: int) -> list[int]:
            assert items is not None
            return [patch] * items.get_feature_size(item)

        # The engine sends each run as one id (`vllm_engine.vllm_prompt`): expand it back.
        return [PromptReplacement(modality="audio", target=[patch], replacement=run)]


@MULTIMODAL_REGISTRY.register_processor(
    StepAudio2EmbedsProcessor,
    info=StepAudio2ProcessingInfo,
    dummy_inputs=StepAudio2DummyInputs,
)
class StepAudio2ForVllm(nn.Module, SupportsMultiModal):
    """vLLM's Qwen2 decoder under our checkpoint's names, fed audio rows as embeddings."""

    hf_to_vllm_mapper = WeightsMapper(
        orig_to_new_prefix={
            "model.": "language_model.model.",
            "lm_head.": "language_model.lm_head.",
        }
    )

    @classmethod
    def get_placeholder_str(cls, modality: str, i: int) -> str | None:
        if modality.startswith("audio"):
            return "<audio_patch>"
        raise ValueError(f"only audio is supported, not {modality}")

    def __init__(self, *, vllm_config: VllmConfig, prefix: str = "") -> None:
        super().__init__()
        config = vllm_config.model_config.hf_config
        self.dtype = vllm_config.model_config.dtype
        self.language_model: Any
        with self._mark_language_model(vllm_config):
            self.language_model = init_vllm_registered_model(
                vllm_config=vllm_config,
                hf_config=config.text_config,
                prefix=maybe_prefix(prefix, "language_model"),
                architectures=["Qwen2ForCausalLM"],
            )
        self.make_empty_intermediate_tensors = self.language_model.make_empty_intermediate_tensors

    def embed_multimodal(self, **kwargs: object) -> MultiModalEmbeddings:
        rows = kwargs.get("audio_embeds")
        if rows is None:
            return []
        items = rows if isinstance(rows, (list, tuple)) else list(rows)  # type: ignore[call-overload]
        return tuple(item.to(self.dtype) for item in items)

    def forward(
        self,
        input_ids: torch.Tensor | None,
        positions: torch.Tensor,
        intermediate_tensors: IntermediateTensors | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: object,
    ) -> torch.Tensor | IntermediateTensors:
        if intermediate_tensors is not None:
            inputs_embeds = None
        return self.language_model.model(
            input_ids, positions, intermediate_tensors, inputs_embeds=inputs_embeds
        )

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor | None:
        return self.language_model.compute_logits(hidden_states)

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        decoder_weights = (
            (name, tensor) for name, tensor in weights if not name.startswith(SERVER_SIDE_PREFIXES)
        )
        loader = AutoWeightsLoader(self)
        return loader.load_weights(decoder_weights, mapper=self.hf_to_vllm_mapper)

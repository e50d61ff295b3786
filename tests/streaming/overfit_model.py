"""A deterministic reasoning model for the scheduler tests: the tiny checkpoint, overfitted.

Random weights almost never write `</think>`. This loads a tiny checkpoint in the real format
and trains its decoder for a few seconds of CPU on fixed replies in R1's format, so that greedy
decoding reproduces them: `<think>\\n{reasoning}\\n</think>\\n{answer}<|EOT|>` after the
generation prompt, and `{answer}<|EOT|>` after a reasoning cut short at any point (the answer
branch's prompt, Mind-Paced Speaking's think-incomplete training).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from streaming.model.checkpoint import LoadedModel, load_checkpoint
from streaming.model.prompt import Message, PromptBuilder

TRAIN_STEPS = 200  # enough for greedy decoding to reproduce every target exactly
LEARNING_RATE = 1e-2
CUT_STRIDE = 4  # reasoning cuts trained for the answer branch, every this many tokens


@dataclass(frozen=True)
class Reply:
    question: str
    reasoning: str
    answer: str
    tools: tuple[dict[str, Any], ...] = ()  # declared in the prompt's tool_json_schemas turn


REPLIES = (
    Reply(
        "What is seven times six?",
        "I hear: seven times six. The user asks a question about arithmetic, so I should "
        "answer briefly. 7 * 6 = 42.",
        "Seven times six is forty two.",
    ),
    Reply(
        "What is twelve plus nine?",
        "I hear: twelve plus nine. 12 + 9 = 21.",
        "Twelve plus nine is twenty one.",
    ),
)


CALCULATE = {
    "type": "function",
    "name": "calculate",
    "description": "Evaluate an arithmetic expression",
    "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}},
}
# A reply that calls a tool instead of answering (StepFun's call format, in the answer).
TOOL_REPLY = Reply(
    "What is nine times nine?",
    "I hear: nine times nine. I will use the calculator.",
    'Let me check.<tool_call>function\ncalculate\n{"expression": "9 * 9"}</tool_call>',
    tools=(CALCULATE,),
)


def conversation_ids(builder: PromptBuilder, reply: Reply) -> list[int]:
    messages = [Message("user", reply.question)]
    return builder.build(messages, tools=reply.tools, add_generation_prompt=False).token_ids


def target_ids(builder: PromptBuilder, reply: Reply) -> list[int]:
    """What greedy decoding must write after the generation prompt."""
    special = builder.special
    return [
        *builder.encode(reply.reasoning + "\n"),
        special.think_end,
        *builder.encode("\n"),
        *builder.encode(reply.answer),
        special.eot,
    ]


def _examples(builder: PromptBuilder) -> list[tuple[list[int], int]]:
    """(token ids, index of the first target token) of every training sequence."""
    examples = []
    newline = builder.encode("\n")
    for reply in (*REPLIES, TOOL_REPLY):
        conversation = conversation_ids(builder, reply)
        prompt = conversation + builder.assistant_prefix()
        examples.append((prompt + target_ids(builder, reply), len(prompt)))
        reasoning = builder.encode(reply.reasoning)
        answer = [*builder.encode(reply.answer), builder.special.eot]
        for cut in range(0, len(reasoning), CUT_STRIDE):
            prefix = conversation + builder.assistant_prefix(reasoning[:cut] + newline, [])
            examples.append((prefix + answer, len(prefix)))
    return examples


def overfit(checkpoint: Path, steps: int = TRAIN_STEPS) -> LoadedModel:
    """The checkpoint loaded in float32 on CPU, its decoder trained on `REPLIES`."""
    torch.manual_seed(0)
    loaded = load_checkpoint(checkpoint, dtype=torch.float32, device="cpu")
    builder = PromptBuilder(loaded.tokenizer, loaded.special)
    examples = _examples(builder)
    length = max(len(ids) for ids, _ in examples)
    inputs = torch.zeros(len(examples), length, dtype=torch.long)
    labels = torch.full((len(examples), length), -100, dtype=torch.long)
    for row, (ids, start) in enumerate(examples):
        inputs[row, : len(ids)] = torch.tensor(ids)
        # right padding: causal attention keeps it out of every real position
        labels[row, start - 1 : len(ids) - 1] = torch.tensor(ids[start:])
    model = loaded.model
    trained = list(model.model.parameters()) + list(model.lm_head.parameters())
    for parameter in trained:
        parameter.requires_grad_(True)
    optimizer = torch.optim.Adam(trained, lr=LEARNING_RATE)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: more threads only contend (several times slower)
    try:
        _train(model, optimizer, inputs, labels, steps)
    finally:
        torch.set_num_threads(threads)
    model.eval().requires_grad_(False)
    return loaded


def _train(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    steps: int,
) -> None:
    for _ in range(steps):
        logits = model(model.embed_tokens(inputs))
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


@torch.inference_mode()
def greedy(loaded: LoadedModel, ids: list[int], steps: int) -> list[int]:
    """Greedy tokens by full recompute (no cache): the reference the engine must match."""
    ids = list(ids)
    out: list[int] = []
    for _ in range(steps):
        logits = loaded.model(loaded.model.embed_tokens(torch.tensor([ids])))[0, -1]
        token = int(logits.argmax())
        out.append(token)
        ids.append(token)
        if token in loaded.special.stop_ids:
            break
    return out

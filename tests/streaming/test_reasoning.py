"""Splitting a streamed reply into reasoning and answer: table tests at the text level, then
token level with real byte-level BPE tokenizers (tags as special tokens, and spelt in pieces)."""

from __future__ import annotations

import random

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from streaming.reasoning import (
    REPLACEMENT_CHAR,
    IncrementalDetokenizer,
    ReasoningParser,
    ReplyDelta,
    ReplyParser,
)

# (name, reply text, starts_in_reasoning, expected reasoning, expected answer)
CASES = [
    (
        "r1 prompt opened the tag",
        "I hear: 7 * 6.\n7 * 6 = 42.\n</think>\nForty two.",
        True,
        "I hear: 7 * 6.\n7 * 6 = 42.",
        "Forty two.",
    ),
    ("explicit opening tag", "<think>\nweighing it\n</think>\n\nYes.", True, "weighing it", "Yes."),
    ("opening tag after whitespace", "\n <think>x</think>y", True, "x", "y"),
    ("opening tag with no-think prompt", "<think>hmm</think>ok", False, "hmm", "ok"),
    ("no-think prompt, plain answer", "Just the answer.", False, "", "Just the answer."),
    ("empty reasoning", "\n\n</think>\nHi there.", True, "", "Hi there."),
    (
        "reasoning cut off before the close tag",
        "still thinking about",
        True,
        "still thinking about",
        "",
    ),
    ("close tag without open tag mid text", "a</think>b", True, "a", "b"),
    (
        "angle brackets that are no tag",
        "if a < b and c </ d</think>so <b>!",
        True,
        "if a < b and c </ d",
        "so <b>!",
    ),
    ("partial tag at the very end is text", "thinking </thi", True, "thinking </thi", ""),
    ("partial open tag at the end is text", "<thi", True, "<thi", ""),
    ("a second close tag is never spoken", "r</think>a</think>b", True, "r", "ab"),
    ("a stray close tag in a no-think answer", "</think>\nSeven.", False, "", "Seven."),
    ("tags split across the answer", "x</think>a</th" + "ink>b<thi" + "nk>c", True, "x", "abc"),
    ("a partial tag at the end of an answer is text", "x</think>a </th", True, "x", "a </th"),
    (
        "inner whitespace kept",
        "one\n\ntwo  \n</think>\nthree\n four \n",
        True,
        "one\n\ntwo",
        "three\n four",
    ),
    ("unicode", "Ça fait 🙂 四十二\n</think>\n四十二 €", True, "Ça fait 🙂 四十二", "四十二 €"),
    ("nothing at all", "", True, "", ""),
]


def parse(pieces: list[str], starts_in_reasoning: bool) -> tuple[str, str, list[ReplyDelta]]:
    parser = ReasoningParser(starts_in_reasoning=starts_in_reasoning)
    deltas = [parser.feed(piece) for piece in pieces] + [parser.finish()]
    total = sum(deltas, ReplyDelta())
    return total.reasoning, total.answer, deltas


def random_split(text: str, rng: random.Random) -> list[str]:
    cuts = sorted(rng.sample(range(1, len(text)), k=min(len(text) - 1, rng.randint(1, 6))))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


@pytest.mark.parametrize(
    ("name", "text", "in_reasoning", "reasoning", "answer"), CASES, ids=[case[0] for case in CASES]
)
def test_parser_table_in_one_piece_per_char_and_random_splits(
    name, text, in_reasoning, reasoning, answer
):
    rng = random.Random(name)
    splits = [[text], list(text)] + [random_split(text, rng) for _ in range(20) if len(text) > 1]
    for pieces in splits:
        assert parse(pieces, in_reasoning)[:2] == (reasoning, answer), pieces


def test_parser_holds_back_only_what_may_become_a_tag():
    parser = ReasoningParser()
    assert parser.feed("abc <") == ReplyDelta(reasoning="abc")
    assert parser.feed("/think") == ReplyDelta()
    assert parser.feed("> de") == ReplyDelta(answer="de")
    assert parser.feed("f") == ReplyDelta(answer="f")


def test_parser_waits_at_the_start_only_while_an_open_tag_is_possible():
    parser = ReasoningParser()
    assert parser.feed("<th") == ReplyDelta()
    assert parser.feed("ought") == ReplyDelta(reasoning="<thought")


# -- token level -----------------------------------------------------------------------------

CORPUS = [
    "I hear: seven times six. 7 * 6 = 42.",
    "Seven times six is forty two.",
    "the answer is yes and the reasoning is short",
] * 20
THINK_TAGS = ["<think>", "</think>"]
EOT = "<|EOT|>"


def byte_level_tokenizer(tags_are_tokens: bool) -> PreTrainedTokenizerFast:
    """A small byte-level BPE, as Qwen2's: characters outside its merges are split into single
    bytes, so a multi-byte character spans several tokens."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer)
    fast.add_special_tokens({"additional_special_tokens": [EOT]})
    if tags_are_tokens:
        fast.add_tokens(THINK_TAGS, special_tokens=True)
    return fast


@pytest.fixture(params=[True, False], ids=["tags-as-tokens", "tags-spelt-in-pieces"])
def tokenizer(request) -> PreTrainedTokenizerFast:
    return byte_level_tokenizer(request.param)


REPLY = "I hear: sept × six. Ça 🙂 四十二.\n</think>\nSeven times six is forty two 🎉."


def test_tags_are_one_token_or_several(tokenizer):
    ids = tokenizer.encode("</think>", add_special_tokens=False)
    tags_are_tokens = "</think>" in tokenizer.get_vocab()
    assert (len(ids) == 1) == tags_are_tokens


def test_detokenizer_never_splits_a_character(tokenizer):
    ids = tokenizer.encode(REPLY, add_special_tokens=False)
    # The test means something only if some character spans several tokens.
    assert any(REPLACEMENT_CHAR in tokenizer.decode([i]) for i in ids)
    detokenizer = IncrementalDetokenizer(tokenizer)
    deltas = [detokenizer.push(i) for i in ids] + [detokenizer.flush()]
    assert "".join(deltas) == tokenizer.decode(ids) == REPLY
    assert not any(REPLACEMENT_CHAR in delta for delta in deltas)


def test_detokenizer_flush_shows_a_cut_character(tokenizer):
    ids = tokenizer.encode("ok 🙂", add_special_tokens=False)
    detokenizer = IncrementalDetokenizer(tokenizer)
    text = "".join(detokenizer.push(i) for i in ids[:-1])
    assert text == "ok "
    assert detokenizer.flush().endswith(REPLACEMENT_CHAR)


def test_reply_parser_over_tokens_until_the_stop_id(tokenizer):
    eot = tokenizer.convert_tokens_to_ids(EOT)
    ids = tokenizer.encode(REPLY + EOT + "ignored", add_special_tokens=False)
    parser = ReplyParser(tokenizer, stop_ids=[eot])
    deltas = [parser.push(i) for i in ids]
    assert parser.done
    assert parser.reasoning == "I hear: sept × six. Ça 🙂 四十二."
    assert parser.answer == "Seven times six is forty two 🎉."
    total = sum(deltas, ReplyDelta())
    assert (total.reasoning, total.answer) == (parser.reasoning, parser.answer)
    assert parser.finish() == ReplyDelta()


def test_reply_parser_with_explicit_open_tag_and_no_stop(tokenizer):
    ids = tokenizer.encode("<think>\nshort\n</think>\nyes", add_special_tokens=False)
    parser = ReplyParser(tokenizer, starts_in_reasoning=False)
    for i in ids:
        parser.push(i)
    parser.finish()
    assert (parser.reasoning, parser.answer) == ("short", "yes")

"""System prompts, tool schemas and tool outputs: varied, held out, and read back right."""

import json

import numpy as np

from streaming.arith import context
from streaming.model.prompt import tool_schemas_json


def test_calculate_is_declared_in_every_layout() -> None:
    rng = np.random.default_rng(0)
    layouts = set()
    for held_out in (False, True):
        for _ in range(60):
            declared = context.tools(held_out, True, rng)
            assert context.declares_calculate(declared)
            wrapped = json.loads(tool_schemas_json(declared))
            [calculate] = [t for t in wrapped if t["function"]["name"] == "calculate"]
            parameters = calculate["function"]["parameters"]
            assert parameters["required"] == ["expression"]
            assert parameters["properties"]["expression"]["type"] == "string"
            layouts.add(("strict" in calculate["function"], "title" in parameters))
            others = context.tools(held_out, False, rng)
            assert others and not context.declares_calculate(others)
    assert layouts == {(False, False), (False, True), (True, True)}


def test_held_out_varieties_are_not_trained() -> None:
    assert set(context.HELD_OUT_DESCRIPTIONS).isdisjoint(context.TRAIN_DESCRIPTIONS)
    assert set(context.HELD_OUT_OUTPUT_FORMS).isdisjoint(context.TRAIN_OUTPUT_FORMS)
    names = {t["name"] for t in context.TRAIN_OTHER_TOOLS}
    assert names.isdisjoint(t["name"] for t in context.HELD_OUT_OTHER_TOOLS)
    rng = np.random.default_rng(1)
    trained = {context.system_prompt(False, rng) for _ in range(300)}
    held = {context.system_prompt(True, rng) for _ in range(50)}
    assert trained.isdisjoint(held)
    assert max(len(p.split()) for p in trained) > 25  # personas of several sentences


def test_tool_outputs_hold_the_value() -> None:
    rng = np.random.default_rng(2)
    for held_out in (False, True):
        for value in (0, 7, 42, 144):
            for _ in range(10):
                output = context.tool_output(value, held_out, rng)
                assert context.output_value(output) == value, output
    values = [context.returned_value(42, rng) for _ in range(400)]
    false = [v for v in values if v != 42]
    assert 0.1 < len(false) / len(values) < 0.3
    assert all(0 <= v <= context.RESULT_MAX for v in false)


def test_call_arguments_are_the_builders_json() -> None:
    assert context.call_arguments(7, "*", 6) == '{"expression": "7 * 6"}'
    assert json.loads(context.call_arguments(20, "-", 3)) == {"expression": "20 - 3"}

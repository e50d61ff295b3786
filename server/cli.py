"""`step-realtime serve`: run the realtime server; `step-realtime answer FILE`: answer offline.

Every `serve` flag is also an environment variable, `STEP_REALTIME_<FLAG>` (dashes as underscores,
upper case); a flag given on the command line wins over the variable. `--help` lists all of them
with their defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import os
import sys
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from server.settings import ENV_PREFIX, Settings
from streaming.cli import add_answer_command
from streaming.responder import Responder

RESPONDER_FLAG_HELP = (
    "replace the model side by 'module:factory', a no-argument factory returning a "
    "streaming.responder.Responder; default: the torch engine over --model"
)


def env_name(flag: str) -> str:
    return ENV_PREFIX + flag.upper().replace("-", "_")


def _convert(kind: Any, text: str) -> Any:
    if kind is bool:
        return text.strip().lower() in ("1", "true", "yes", "on")
    if kind == tuple[str, ...]:
        return tuple(part.strip() for part in text.split(",") if part.strip())
    if kind in (int, float, str):
        return kind(text)
    # Optional[X]: an empty value means None
    inner = [arg for arg in typing.get_args(kind) if arg is not type(None)]
    return None if text == "" else _convert(inner[0], text)


def build_parser(env: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(prog="step-realtime", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    add_answer_command(commands)
    serve = commands.add_parser(
        "serve",
        help="run the OpenAI Realtime server",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    hints = typing.get_type_hints(Settings)
    for field in dataclasses.fields(Settings):
        flag = field.name.replace("_", "-")
        kind = hints[field.name]
        variable = env_name(flag)
        default = _convert(kind, env[variable]) if variable in env else field.default
        help_ = f"{field.metadata['help']} [env {variable}]"
        if kind is bool:
            serve.add_argument(
                f"--{flag}", action=argparse.BooleanOptionalAction, default=default, help=help_
            )
        else:
            serve.add_argument(
                f"--{flag}",
                type=functools.partial(_convert, kind),
                default=default,
                help=help_,
            )
    serve.add_argument(
        "--responder",
        default=env.get(env_name("responder")),
        help=f"{RESPONDER_FLAG_HELP} [env {env_name('responder')}]",
    )
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    names = {field.name for field in dataclasses.fields(Settings)}
    return Settings(**{name: value for name, value in vars(args).items() if name in names})


def load_responder(spec: str | None, settings: Settings) -> Responder:
    if spec is None:
        return open_model(settings)
    if ":" not in spec:
        raise SystemExit(f"error: --responder must be module:factory, got {spec!r}")
    module_name, _, factory = spec.partition(":")
    try:
        make = getattr(importlib.import_module(module_name), factory)
    except (ImportError, AttributeError) as error:
        raise SystemExit(f"error: --responder {spec}: {error}") from None
    return make()


def vllm_options(settings: Settings) -> Any:
    """vLLM's knobs from the server's settings (`--engine vllm`)."""
    from streaming.engine.vllm_engine import VllmOptions

    return VllmOptions(
        tensor_parallel_size=settings.tensor_parallel_size,
        gpu_memory_utilization=settings.gpu_memory_utilization,
        cpu_kv_cache_gib=settings.cpu_kv_cache_gib,
        max_sequences=settings.max_sequences,
        max_model_len=settings.max_seq_len,
        enforce_eager=settings.enforce_eager,
        dtype=settings.dtype,
    )


def remote_options(settings: Settings) -> Any:
    """The remote engine's settings (`--engine remote`)."""
    from streaming.engine.remote_engine import RemoteOptions

    assert settings.engine_url is not None  # Settings.check
    return RemoteOptions(
        url=settings.engine_url,
        max_sequences=settings.max_sequences,
        max_context=settings.max_seq_len,
        api_key=settings.engine_api_key,
        affinity_header=settings.engine_affinity_header,
        affinity_ranks=settings.engine_affinity_ranks,
    )


def open_model(settings: Settings) -> Responder:
    from streaming.engine.base import EngineError
    from streaming.model.config import CheckpointError
    from streaming.pipeline import ResponderSettings
    from streaming.pipeline import load_responder as load_model_responder
    from streaming.scheduler import ScheduleSettings

    try:
        return load_model_responder(
            settings.model,
            device=settings.device,
            dtype=settings.dtype,
            max_sequences=settings.max_sequences,
            max_seq_len=settings.max_seq_len,
            engine=settings.engine,
            vllm_options=vllm_options(settings) if settings.engine == "vllm" else None,
            remote_options=remote_options(settings) if settings.engine == "remote" else None,
            tts_backend=settings.tts_backend,
            tts_voice_path=settings.tts_voice_path,
            settings=ResponderSettings(
                temperature=settings.temperature,
                schedule=ScheduleSettings(
                    reasoning_segment=settings.reasoning_segment_tokens,
                    answer_segment=settings.answer_segment_tokens,
                    reasoning_budget=settings.reasoning_budget,
                ),
            ),
        )
    except (CheckpointError, EngineError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "serve":
        return int(args.run(args))
    settings = settings_from(args)
    try:
        settings.check()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from server.app import serve
    from server.logs import configure_logging
    from server.startup import StartupError, load_turn_models

    configure_logging(settings.log_level)
    try:
        # turn detection's models first: a missing one is found before the model is loaded
        turn_models = load_turn_models(settings)
        serve(load_responder(args.responder, settings), settings, turn_models=turn_models)
    except StartupError as error:  # a part every session needs is missing (server/startup.py)
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

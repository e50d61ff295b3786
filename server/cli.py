"""`python -m server serve`: run the realtime server.

Every flag is also an environment variable, `STEP_REALTIME_<FLAG>` (dashes as underscores,
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

RESPONDER_FLAG_HELP = (
    "the model side, as 'module:factory'; the factory takes no arguments and returns a "
    "streaming.responder.Responder"
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
    parser = argparse.ArgumentParser(prog="python -m server", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
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


def load_responder(spec: str | None) -> Any:
    if not spec or ":" not in spec:
        raise SystemExit(
            f"no responder: pass --responder module:factory (or {env_name('responder')})"
        )
    module_name, _, factory = spec.partition(":")
    return getattr(importlib.import_module(module_name), factory)()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = settings_from(args)
    try:
        settings.check()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from server.app import serve
    from server.logs import configure_logging

    configure_logging(settings.log_level)
    serve(load_responder(args.responder), settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

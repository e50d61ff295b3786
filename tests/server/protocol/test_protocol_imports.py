"""The protocol machine is free of I/O and of the model: importing it loads neither torch nor
transformers (a server front end, a fuzzer or a client test can use it without them)."""

from __future__ import annotations

import subprocess
import sys


def test_server_protocol_imports_neither_torch_nor_transformers() -> None:
    code = (
        "import sys, server.protocol, streaming.turns.machine\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr

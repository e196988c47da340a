"""Run ``slimface ARGS...`` in a child process, to reach conditions a test process cannot
set on itself.

* :func:`run_cli` starts ``python _cli_child.py ARGS`` (the tiny test model registered) with a
  file size limit (a disk that fills up), or simply as another process.
* :func:`run_main_unprivileged` forks the test process and drops to user ``nobody`` before
  calling ``main`` (file permissions do not stop root). It forks rather than starting a new
  interpreter because the interpreter may live where ``nobody`` cannot read.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import select
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: The unprivileged user tests run as when the test process is root.
NOBODY = 65534


def run_cli(argv: list[str], *, file_size_limit: int | None = None,
            timeout: float = 180) -> subprocess.CompletedProcess:
    """``slimface argv`` in a new process (tiny test model registered)."""

    def limit() -> None:
        if file_size_limit is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a kill
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    src = str(HERE.parent / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [src, *filter(None, [os.environ.get("PYTHONPATH")])]), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(Path(__file__)), *argv], capture_output=True,
                          text=True, timeout=timeout, env=env, preexec_fn=limit)


def run_main_unprivileged(argv: list[str], timeout: float = 120) -> tuple[int, str, str]:
    """``main(argv)`` as user ``nobody`` (as the current user when not root): rc, out, err.

    The command must not run a model: torch may hang in a forked child. Commands that fail
    before embedding (a gallery that cannot be written) or need no model (list, remove,
    create) are fine.
    """
    from slimface.cli.main import main

    def call() -> list:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(argv)
        return [rc, out.getvalue(), err.getvalue()]

    rc, out, err = run_unprivileged(call, timeout, what=f"slimface {' '.join(argv)}")
    return rc, out, err


def run_unprivileged(fn, timeout: float = 120, what: str = "") -> object:
    """``fn()`` as user ``nobody`` in a forked child (directly when not root); its result
    must be JSON-serialisable. An exception in the child fails with its traceback."""
    if os.geteuid() != 0:
        return fn()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            payload = {"result": fn()}
        except BaseException:  # noqa: BLE001 - reported to the parent, which fails the test
            payload = {"error": traceback.format_exc()}
        data = json.dumps(payload).encode()
        while data:
            data = data[os.write(write_end, data):]
        os._exit(0)
    os.close(write_end)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while True:
            ready, _, _ = select.select([read_end], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                raise TimeoutError(f"{what or fn} as user {NOBODY} took over {timeout} s")
            chunk = os.read(read_end, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    payload = json.loads(b"".join(chunks).decode())
    if "error" in payload:
        raise AssertionError(f"{what or fn} as user {NOBODY} failed:\n{payload['error']}")
    return payload["result"]


def _main(argv: list[str]) -> int:
    sys.path.insert(0, str(HERE))
    from _gallery_fakes import TinyBackbone, fake_align

    import slimface.gallery.embedder as emb
    from slimface.cli.main import main
    from slimface.models import BACKBONES

    BACKBONES._factories["tiny_test"] = lambda **kw: TinyBackbone(seed=kw.get("seed", 0)).eval()
    BACKBONES._display["tiny_test"] = "tiny-test"
    emb._default_aligner = lambda: fake_align
    return main(argv)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))

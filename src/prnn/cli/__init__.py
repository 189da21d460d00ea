"""The ``prnn`` command line: thin subcommands over the library.

Every command parses its flags, calls the library and prints. Results go to stdout; logs and
progress bars go to stderr, so ``prnn evaluate ... --json -`` prints nothing but JSON on stdout.
Errors prnn raises on purpose (bad files, bad settings) become one line on stderr and exit code 2;
``--debug`` shows the traceback instead. Flags and inputs are checked before any work starts (a
mistake in the last flag costs no reading or training), and so is that every output can be
written without destroying a file prnn did not write (``prnn.cli.paths``).

Start-up is light: the parser (``prnn.cli.parser``) imports no PyTorch, Polars or SciPy, so
``--help``, ``--version`` and argument errors answer at once; a command's module is imported
only to run it. One module per command group: ``split``, ``train`` (and ``models``),
``evaluate`` (and ``recommend``), ``features``, ``experiment``.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from prnn.bundled import example_events_path
from prnn.cli.parser import build_parser
from prnn.errors import PrnnError

__all__ = ["build_parser", "example_events_path", "main"]


@contextlib.contextmanager
def _threads_setting(threads: int | None):
    """``--threads N`` as ``PRNN_THREADS`` while the command runs: every library call resolves
    its thread count from it (``prnn.threads``)."""
    if threads is None:
        yield
        return
    from prnn.threads import ENV_VAR, parse_thread_count

    previous = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = str(parse_thread_count(threads, "--threads"))
    try:
        yield
    finally:
        if previous is None:
            del os.environ[ENV_VAR]
        else:
            os.environ[ENV_VAR] = previous


#: PyTorch's switch (c10's CPU allocator, read once, at its first allocation) for backing
#: tensors of 2 MB and more with transparent huge pages where the kernel lends them on request
HUGE_PAGES_VAR = "THP_MEM_ALLOC_ENABLE"


def _huge_pages_for_large_tensors() -> None:
    """Large tensors on huge pages, unless the user said otherwise or PyTorch already runs.

    A training step reads and writes a few thousand scattered rows of each item table (and of
    its optimiser buffers): with a million items, 400 MB a table, the 4 KB pages' address
    translations miss their cache at nearly every row. On huge pages the row update took 12%
    less time (benchmarks/row_updates.py) and an epoch over a million items ran 7% faster
    (benchmarks/scale.py --large; docs/scale.md); tensors under 2 MB, every table of a small
    catalogue among them, are allocated as before.
    """
    if "torch" not in sys.modules:
        os.environ.setdefault(HUGE_PAGES_VAR, "1")


def _handler(reference: str):
    """The command function named ``"module:function"`` (its module imported now)."""
    module, _, function = reference.partition(":")
    return getattr(importlib.import_module(module), function)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s %(message)s" if args.debug else "%(message)s",
        stream=sys.stderr,
        force=True,
    )
    _huge_pages_for_large_tensors()
    try:
        with _threads_setting(args.threads):
            return _handler(args.handler)(args)
    except PrnnError as error:
        if args.debug:
            raise
        print(f"prnn: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # stdout closed early (``prnn models gru4rec | head``): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as error:  # the file system failed under us (disk full, file removed)
        if args.debug:
            raise
        where = f"{error.filename}: " if error.filename else ""
        print(f"prnn: error: {where}{error.strerror or error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("prnn: interrupted", file=sys.stderr)
        return 130

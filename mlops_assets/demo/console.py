"""The demo's output: one line per stage with its duration and key figure, a live progress bar
while a stage runs (on a terminal), and everything else — third-party logs, warnings, the KFP
runner's artifact dumps, subprocess output — in a log file under the data folder.

The redirection is at the file-descriptor level, so subprocesses that inherit stdout/stderr (KFP's
local runner, dbt) write to the log too; the console keeps a duplicate of the real stdout.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any


@dataclass
class Stage:
    """What a running stage reports: a key figure for its line, and progress for its bar."""

    name: str
    figure: str = ""
    total: float | None = None
    completed: float = 0.0
    detail: str = ""
    _refresh: Callable[[], None] = field(default=lambda: None, repr=False)

    def update(self, *, completed: float | None = None, total: float | None = None, detail=None):
        if total is not None:
            self.total = total
        if completed is not None:
            self.completed = completed
        if detail is not None:
            self.detail = detail
        self._refresh()


class DemoConsole:
    """Use as a context manager around the whole demo."""

    def __init__(self, log_dir: Path):
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"demo-{stamp}.log"
        self.started = time.perf_counter()
        self._saved: list[int] = []
        self._out: IO[str] | None = None
        self._err: IO[str] | None = None
        self._log_file: IO[bytes] | None = None
        self.console: Any = None
        self.durations: dict[str, float] = {}  # seconds per finished stage

    # -- set-up and tear-down ----------------------------------------------------------------

    def __enter__(self) -> DemoConsole:
        from rich.console import Console

        sys.stdout.flush()
        sys.stderr.flush()
        self._saved = [os.dup(1), os.dup(2)]
        self._out = os.fdopen(os.dup(self._saved[0]), "w", buffering=1)
        self._err = os.fdopen(os.dup(self._saved[1]), "w", buffering=1)
        self._log_file = self.log_path.open("ab", buffering=0)
        os.dup2(self._log_file.fileno(), 1)
        os.dup2(self._log_file.fileno(), 2)
        # Python's own streams keep their buffers: route them to the same file, line-buffered.
        sys.stdout = os.fdopen(os.dup(1), "w", buffering=1)
        sys.stderr = os.fdopen(os.dup(2), "w", buffering=1)
        logging.basicConfig(
            level=logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s %(message)s",
            stream=sys.stderr,
            force=True,
        )
        logging.captureWarnings(True)
        warnings.simplefilter("default")
        self.console = Console(file=self._out, highlight=False)
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os.dup2(self._saved[0], 1)
        os.dup2(self._saved[1], 2)
        for fd in self._saved:
            os.close(fd)
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        logging.captureWarnings(False)
        if self._log_file:
            self._log_file.close()
        for stream in (self._out, self._err):
            if stream:
                stream.close()

    # -- output ------------------------------------------------------------------------------

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def line(self, text: str = "", style: str | None = None) -> None:
        from rich.text import Text

        self.console.print(text, style=style, soft_wrap=True)
        logging.getLogger("mlops.demo").info(Text.from_markup(text).plain)

    def error(self, text: str) -> None:
        assert self._err is not None
        self._err.write(f"error: {text}\n")
        # The log file gets the traceback of the exception being handled, if any: the details.
        logging.getLogger("mlops.demo").error(text, exc_info=sys.exc_info()[0] is not None)

    @contextlib.contextmanager
    def stage(self, name: str, description: str) -> Iterator[Stage]:
        """One stage: a live bar while it runs, then `name  duration  figure`."""
        from rich.progress import (
            BarColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        logging.getLogger("mlops.demo").info("stage %s: %s", name, description)
        progress = Progress(
            SpinnerColumn(),
            TextColumn(f"[cyan]{name:<10}[/] {description}"),
            BarColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        task = progress.add_task(name, total=None, detail="")
        state = Stage(name)

        def refresh() -> None:
            progress.update(task, total=state.total, completed=state.completed, detail=state.detail)

        state._refresh = refresh
        started = time.perf_counter()
        # The live bar only on a terminal; piped output (CI, benchmarks) gets the lines alone.
        live = progress if self.console.is_terminal else contextlib.nullcontext()
        try:
            with live:
                yield state
        except BaseException as err:
            took = time.perf_counter() - started
            reason = "interrupted" if isinstance(err, KeyboardInterrupt) else str(err)
            reason = reason or type(err).__name__
            self.line(f"✗ {name:<10} {took:6.1f}s  {reason}", style="red")
            raise
        took = time.perf_counter() - started
        self.durations[name] = round(took, 1)
        self.line(f"[green]✓[/] [cyan]{name:<10}[/] {took:6.1f}s  {state.figure}")

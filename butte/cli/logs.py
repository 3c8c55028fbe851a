"""Process logging: one line per state change, written in batches.

``logging.StreamHandler`` flushes after every record, which is one ``write`` system call per line; an agent
launching hundreds of tasks a second logs several lines per task, and those syscalls showed up as its
largest single cost. This handler lets the stream buffer and flushes it every ``interval_s`` from a daemon
thread, at once for warnings and errors, and at exit.
"""

from __future__ import annotations

import atexit
import io
import logging
import os
import threading

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class BatchedStreamHandler(logging.StreamHandler[io.TextIOWrapper]):
    """A stream handler that flushes on a timer instead of after every record."""

    def __init__(self, fd: int, interval_s: float = 0.2) -> None:
        stream = io.TextIOWrapper(
            io.BufferedWriter(io.FileIO(fd, "w", closefd=False), buffer_size=64 * 1024),
            encoding="utf-8",
            errors="backslashreplace",
            line_buffering=False,
        )
        super().__init__(stream)
        self._interval_s = interval_s
        self._stopped = threading.Event()
        threading.Thread(target=self._flush_periodically, name="log-flush", daemon=True).start()
        atexit.register(self.flush)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + self.terminator)
        except Exception:
            self.handleError(record)
        if record.levelno >= logging.WARNING:
            self.flush()

    def _flush_periodically(self) -> None:
        while not self._stopped.wait(self._interval_s):
            self.flush()

    def close(self) -> None:
        self._stopped.set()
        self.flush()
        super().close()


def configure_logging(level: str) -> None:
    """Log to standard error at ``level``, batched."""
    handler = BatchedStreamHandler(os.dup(2))
    handler.setFormatter(logging.Formatter(FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])

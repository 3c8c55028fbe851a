"""RecordIO framing of Mesos event streams: ``<decimal byte length>\\n<bytes>``, no separators."""

from __future__ import annotations

from collections.abc import Iterator


def frame(record: bytes) -> bytes:
    """One record ready to write on a stream."""
    return b"%d\n%s" % (len(record), record)


class RecordIOError(ValueError):
    """The stream does not follow RecordIO framing."""


class RecordIODecoder:
    """Incremental decoder: feed it chunks as they arrive, get whole records back."""

    # A length prefix longer than this is garbage, not a record (Mesos lengths are uint64: 20 digits).
    _MAX_PREFIX = 20

    def __init__(self, max_record_bytes: int = 256 * 1024 * 1024) -> None:
        self._buffer = bytearray()
        self._max_record_bytes = max_record_bytes

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        """Add a chunk; yield every record that is now complete.

        Raises:
            RecordIOError: a length prefix is not a positive decimal number.
        """
        self._buffer += chunk
        while True:
            record = self._next_record()
            if record is None:
                return
            yield record

    def _next_record(self) -> bytes | None:
        newline = self._buffer.find(b"\n", 0, self._MAX_PREFIX + 1)
        if newline < 0:
            if len(self._buffer) > self._MAX_PREFIX:
                raise RecordIOError("record length prefix too long")
            return None
        prefix = bytes(self._buffer[:newline])
        if not prefix.isdigit():
            raise RecordIOError(f"bad record length {prefix!r}")
        length = int(prefix)
        if length == 0 or length > self._max_record_bytes:
            raise RecordIOError(f"bad record length {length}")
        end = newline + 1 + length
        if len(self._buffer) < end:
            return None
        record = bytes(self._buffer[newline + 1 : end])
        del self._buffer[:end]
        return record

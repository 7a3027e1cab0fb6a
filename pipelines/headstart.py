"""A head start: work begun in a forked child while this process imports torch and loads the model.

``import torch`` takes 1.3-1.7 s here and holds the GIL nearly all that time, so no thread of
this process gets work done meanwhile (measured: 300 photos decoded by two threads took as long
beside the import as after it). A child forked *before* torch is imported runs on the other core:
``caption-images`` has it decode the first photos, ``tag-video`` the first video's frames.

The child runs ``produce()`` and appends each item, pickled, to an unlinked temporary file; a
pipe tells the parent where each item ends (so the parent needs no GIL-holding thread to keep the
child going), and a second pipe carries the parent's acknowledgements, so that the child stays at
most ``ahead`` items in front of what the parent has taken. An exception in the child is raised in
the parent where its item would have come. The child never imports torch, never writes to the
parent's files (it leaves with ``os._exit``), and is killed when the parent stops or closes the
head start, or stops reading.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import signal
import struct
import sys
import tempfile
import threading
from typing import Any, Callable, Generic, Iterable, Iterator, TypeVar

T = TypeVar("T")

_TOKEN = struct.Struct("<BQ")  # kind, length of the pickled record that follows in the file
_ITEM, _ERROR, _END = 0, 1, 2
DISABLE_ENV = "CAPTIONING_NO_HEAD_START"  # set (to anything) to do all work in this process


def worth_starting() -> bool:
    """Whether a head start gains anything: only before torch is imported (after, the model is
    loaded at once), where processes can fork, and unless disabled by ``$CAPTIONING_NO_HEAD_START``."""
    return "torch" not in sys.modules and hasattr(os, "fork") and not os.environ.get(DISABLE_ENV)


class HeadStart(Generic[T]):
    """The items of ``produce()``, made in a forked child; :meth:`get` them by position, in any
    order from any thread, or iterate over them in order. Close it (or use it as a context manager)."""

    def __init__(self, produce: Callable[[], Iterable[T]], *, ahead: int, count: int | None = None):
        if ahead < 1:
            raise ValueError("ahead must be >= 1")
        self.count = count  # the number of items produce() makes, when the caller knows it
        self._file = tempfile.TemporaryFile(prefix="captioning-head-start-")
        self._ends: list[int] = []  # file offset where each received item ends
        self._final: tuple[int, int] | None = None  # (kind, end offset) of the error or end record
        self._lock = threading.Lock()
        tokens_r, tokens_w = os.pipe()
        acks_r, acks_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        self.pid = os.fork()
        if self.pid == 0:  # the child
            os.close(tokens_r)
            os.close(acks_w)
            _child(produce, self._file.fileno(), tokens_w, acks_r, ahead)
        os.close(tokens_w)
        os.close(acks_r)
        self._tokens, self._acks = tokens_r, acks_w

    def get(self, i: int) -> T:
        """Item ``i`` (from 0), waiting for the child to make it; raises the child's exception
        when it failed before item ``i``, and IndexError when it made fewer items."""
        with self._lock:
            while len(self._ends) <= i and self._final is None:
                self._receive()
            if i < len(self._ends):
                start = self._ends[i - 1] if i else 0
                record = os.pread(self._file.fileno(), self._ends[i] - start, start)
                with contextlib.suppress(BrokenPipeError):  # the child has finished and gone
                    os.write(self._acks, b"\x01")
                return pickle.loads(record)
            kind, end = self._final
            if kind == _ERROR:
                start = self._ends[-1] if self._ends else 0
                raise pickle.loads(os.pread(self._file.fileno(), end - start, start))
            raise IndexError(f"the head start made {len(self._ends)} items")

    def __iter__(self) -> Iterator[T]:
        i = 0
        while True:
            try:
                yield self.get(i)
            except IndexError:
                return
            i += 1

    def stop(self) -> int:
        """End the child now, dropping the item it is making: what it finished stays readable (``count``
        becomes their number, later positions raise IndexError). For a caller that, its model loaded,
        does the rest faster itself. Returns that number."""
        with self._lock:
            self._end_child()
            while self._final is None:
                token = _read_exactly(self._tokens, _TOKEN.size)
                if token is None:  # all it sent is read
                    self._final = (_END, self._ends[-1] if self._ends else 0)
                else:
                    self._take(token)
            if self._final[0] == _END:
                self.count = len(self._ends)
            return len(self._ends)

    def _receive(self) -> None:
        token = _read_exactly(self._tokens, _TOKEN.size)
        if token is None:  # the child died without a word (killed)
            self._final = (_ERROR, -1)
            raise RuntimeError("the head-start process ended unexpectedly")
        self._take(token)

    def _take(self, token: bytes) -> None:
        kind, end = _TOKEN.unpack(token)
        if kind == _ITEM:
            self._ends.append(end)
        else:
            self._final = (kind, end)

    def _end_child(self) -> None:
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(self.pid, 0)
            self.pid = 0

    def close(self) -> None:
        """Stop the child (if still working) and free its file."""
        if self._file.closed:
            return
        self._end_child()
        os.close(self._tokens)
        os.close(self._acks)
        self._file.close()

    def __enter__(self) -> "HeadStart[T]":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if hasattr(self, "_tokens"):
            self.close()


def _read_exactly(fd: int, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _child(produce: Callable[[], Iterable[Any]], fd: int, tokens: int, acks: int, ahead: int) -> None:
    """Run ``produce`` and report every item; never returns."""
    status = 0
    try:
        end, made, taken = 0, 0, 0
        try:
            for item in produce():
                record = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
                os.pwrite(fd, record, end)
                end += len(record)
                os.write(tokens, _TOKEN.pack(_ITEM, end))
                made += 1
                while made - taken >= ahead:  # wait until the parent has taken more
                    got = os.read(acks, 4096)
                    if not got:  # the parent has gone
                        return
                    taken += len(got)
            os.write(tokens, _TOKEN.pack(_END, end))
        except Exception as e:  # the parent raises it where the item would have come
            try:
                record = pickle.dumps(e, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:
                record = pickle.dumps(RuntimeError(f"{type(e).__name__}: {e}"))
            os.pwrite(fd, record, end)
            os.write(tokens, _TOKEN.pack(_ERROR, end + len(record)))
    except BaseException:  # the parent has gone (broken pipe), Ctrl-C...
        status = 1
    finally:
        os._exit(status)

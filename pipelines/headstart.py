"""A head start: work begun in a forked child while this process imports torch and loads the model.

``import torch`` takes 1.3-1.7 s here and holds the GIL nearly all that time, so no thread of
this process gets work done meanwhile (measured: 300 photos decoded by two threads took as long
beside the import as after it). A child forked *before* torch is imported runs on the other core:
``caption-images`` has it decode the first photos, ``tag-video`` the first video's frames.

The child runs ``produce()`` and writes each item, pickled, to an unlinked temporary file; a
pipe tells the parent where each item lies (so the parent needs no GIL-holding thread to keep the
child going), and a second pipe carries the parent's acknowledgements, so that the child stays at
most ``ahead`` items in front of what the parent has taken. The parent takes each item once; the
child writes later items over the ones taken, so the file holds about ``ahead`` items whatever the
length of the work (a two-hour video's frames would otherwise fill a small or memory-backed /tmp).
An exception in the child is raised in the parent where its item would have come. The child never
imports torch, never writes to the parent's files (it leaves with ``os._exit``), and is killed when
the parent stops or closes the head start, or stops reading.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import struct
import sys
import tempfile
import threading
from typing import Any, Callable, Generic, Iterable, Iterator, TypeVar

T = TypeVar("T")

_TOKEN = struct.Struct("<BQQ")  # kind, start and end in the file of its pickled record
_ACK = struct.Struct("<Q")  # the position of an item the parent has taken
_ITEM, _ERROR, _END = 0, 1, 2
DISABLE_ENV = "CAPTIONING_NO_HEAD_START"  # set (to anything) to do all work in this process


def worth_starting() -> bool:
    """Whether a head start gains anything: only before torch is imported (after, the model is
    loaded at once), where processes can fork, and unless disabled by ``$CAPTIONING_NO_HEAD_START``."""
    return "torch" not in sys.modules and hasattr(os, "fork") and not os.environ.get(DISABLE_ENV)


class HeadStart(Generic[T]):
    """The items of ``produce()``, made in a forked child; :meth:`get` each once by position, in any
    order from any thread, or iterate over them in order. Close it (or use it as a context manager)."""

    def __init__(self, produce: Callable[[], Iterable[T]], *, ahead: int, count: int | None = None):
        if ahead < 1:
            raise ValueError("ahead must be >= 1")
        self.count = count  # the number of items produce() makes, when the caller knows it
        self._file = tempfile.TemporaryFile(prefix="captioning-head-start-")
        self._spans: list[tuple[int, int]] = []  # where each received item lies in the file: (start, end)
        self._taken: set[int] = set()  # the items read (their space may hold later items now)
        self._final: tuple[int, int, int] | None = None  # (kind, start, end) of the error or end record
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
        when it failed before item ``i``, IndexError when it made fewer items, and ValueError
        when item ``i`` was taken before."""
        with self._lock:
            if i in self._taken:
                raise ValueError(f"head-start item {i} was taken already (each is read once)")
            while len(self._spans) <= i and self._final is None:
                self._receive()
            if i < len(self._spans):
                start, end = self._spans[i]
                record = os.pread(self._file.fileno(), end - start, start)
                self._taken.add(i)
                with contextlib.suppress(BrokenPipeError):  # the child has finished and gone
                    os.write(self._acks, _ACK.pack(i))
                return pickle.loads(record)
            kind, start, end = self._final
            if kind == _ERROR:
                raise pickle.loads(os.pread(self._file.fileno(), end - start, start))
            raise IndexError(f"the head start made {len(self._spans)} items")

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
                    self._final = (_END, 0, 0)
                else:
                    self._take(token)
            if self._final[0] == _END:
                self.count = len(self._spans)
            return len(self._spans)

    def _receive(self) -> None:
        token = _read_exactly(self._tokens, _TOKEN.size)
        if token is None:  # the child died without a word (killed)
            self._final = (_ERROR, -1, -1)
            raise RuntimeError("the head-start process ended unexpectedly")
        self._take(token)

    def _take(self, token: bytes) -> None:
        kind, start, end = _TOKEN.unpack(token)
        if kind == _ITEM:
            self._spans.append((start, end))
        else:
            self._final = (kind, start, end)

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


class _Space:
    """Where the child's items not yet taken lie in the file: a new record goes into the first gap
    it fits (from offset 0), so the file stays about as large as the items in flight."""

    def __init__(self) -> None:
        self.live: dict[int, tuple[int, int]] = {}  # item -> (start, end) of its record

    def __len__(self) -> int:
        return len(self.live)

    def put(self, item: int, size: int) -> int:
        """Record ``item``'s ``size`` bytes; returns the offset to write them at."""
        start = 0
        for lo, hi in sorted(self.live.values()):
            if lo - start >= size:
                break
            start = max(start, hi)
        self.live[item] = (start, start + size)
        return start

    def taken(self, items: Iterable[int]) -> None:
        """Free the records of ``items``, which the parent has read."""
        for item in items:
            self.live.pop(item, None)


def _child(produce: Callable[[], Iterable[Any]], fd: int, tokens: int, acks: int, ahead: int) -> None:
    """Run ``produce`` and report every item; never returns."""
    status = 0
    space = _Space()

    def read_acks(block: bool) -> bool:
        """Take the parent's acknowledgements (waiting for one when ``block``); False if it has gone. Each
        is one write of _ACK.size bytes, atomic on a pipe, and a read asks for a multiple of it: no read
        splits one."""
        if not block and not select.select([acks], [], [], 0)[0]:
            return True
        got = os.read(acks, 512 * _ACK.size)
        if not got:
            return False
        space.taken(item for (item,) in _ACK.iter_unpack(got))
        return True

    def write(kind: int, item: int, record: bytes) -> None:
        start = space.put(item, len(record))
        os.pwrite(fd, record, start)
        os.write(tokens, _TOKEN.pack(kind, start, start + len(record)))

    try:
        made = 0
        try:
            for item in produce():
                write(_ITEM, made, pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL))
                made += 1
                if not read_acks(block=False):
                    return
                while len(space) >= ahead:  # wait until the parent has taken more
                    if not read_acks(block=True):  # the parent has gone
                        return
            os.write(tokens, _TOKEN.pack(_END, 0, 0))
        except Exception as e:  # the parent raises it where the item would have come
            try:
                record = pickle.dumps(e, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:
                record = pickle.dumps(RuntimeError(f"{type(e).__name__}: {e}"))
            write(_ERROR, made, record)
    except BaseException:  # the parent has gone (broken pipe), Ctrl-C...
        status = 1
    finally:
        os._exit(status)

"""The sandbox's plumbing (pipeline/documents/sandbox.py): a document as a sealed anonymous file, and the wire
between the worker and its confined child, length-prefixed messages over a Unix socket with descriptors
passed as SCM_RIGHTS."""

from __future__ import annotations

import array
import fcntl
import functools
import math
import os
import select
import socket
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

# The largest request written ahead of the child's reading (the next documents of a batch): below the smallest
# buffer a Unix socket may have, so the kernel takes it whole or not at all. An inspection's request is ~300 bytes.
AHEAD_BYTES = 2048
RECEIVE_BYTES = 64 * 1024  # read at once: a request, and most answers (below malloc's mmap threshold)
_HEADER = struct.Struct("!Q")
SEALS = fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL  # no write, grow or shrink, by anyone
COPY_BYTES = 16 * 1024 * 1024  # per sendfile call


# --- the document: a sealed anonymous file ---------------------------------------------------


@contextmanager
def anonymous_file(name: str = "dmp-document") -> Iterator[BinaryIO]:
    """A writable file that lives in memory only (memfd): no name on any disk, gone with the last
    descriptor, so a killed process leaves nothing behind. Freeze it before handing it on."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    with open(fd, "w+b") as file:
        yield file


def freeze(file: BinaryIO) -> None:
    """Seal the file's content for good (no write, grow or shrink, by anyone) and rewind it."""
    file.flush()
    fcntl.fcntl(file.fileno(), fcntl.F_ADD_SEALS, SEALS)
    file.seek(0)


@contextmanager
def frozen_copy(path: Path, name: str = "dmp-document") -> Iterator[int]:
    """The descriptor of a frozen anonymous file holding a copy of `path`'s bytes, copied by the
    kernel (sendfile): what `anonymous_file` and `freeze` make, without the bytes passing through
    Python. Its offset is left at the end: read it through `descriptor_path`, as the parsers do."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        source = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            while os.sendfile(fd, source, None, COPY_BYTES):
                pass
        finally:
            os.close(source)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, SEALS)
        yield fd
    finally:
        os.close(fd)


@functools.cache  # a child gets its documents as the same few descriptors: a Path costs microseconds to build
def descriptor_path(fd: int) -> Path:
    """A path that opens the file behind this process's descriptor `fd`, and means nothing in any
    other process: how the parsers, which take paths, read a document they received as a descriptor."""
    return Path(f"/proc/self/fd/{fd}")


# --- the wire: length-prefixed pickles over a Unix socket, descriptors as SCM_RIGHTS -----------
#
# A message is written by one sendmsg (length, bytes and descriptors together) and, when it fits
# RECEIVE_BYTES, read by one recvmsg: the peer wakes once per message, and no socket changes mode
# (the parent waits with poll, against its deadline, before reading from a blocking socket). On
# this kind of host each process switch and system call costs more than the exchange's own work.


def _framed(payload: bytes, fds: tuple[int, ...] = ()) -> tuple[bytes, list[tuple[int, int, array.array[int]]]]:
    """A message's bytes (its length, then its payload) and its descriptors, as sendmsg takes them."""
    rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    return _HEADER.pack(len(payload)) + payload, rights


def send(sock: socket.socket, payload: bytes, fds: tuple[int, ...] = ()) -> None:
    """One message, in one system call unless the socket's buffer is full (the peer reads whole messages)."""
    data, rights = _framed(payload, fds)
    sent = sock.sendmsg([data], rights)
    if sent < len(data):
        sock.sendall(memoryview(data)[sent:])


def send_now(sock: socket.socket, payload: bytes, fds: tuple[int, ...] = ()) -> bool:
    """Send one message only if the socket takes it at once: whether it did. A message of at most
    AHEAD_BYTES is one buffer of the kernel's, even with the smallest socket buffer it allows, so it is
    written whole or not at all."""
    data, rights = _framed(payload, fds)
    if len(data) > AHEAD_BYTES:
        return False
    try:
        sent = sock.sendmsg([data], rights, socket.MSG_DONTWAIT)
    except BlockingIOError:
        return False
    if sent < len(data):
        raise BrokenPipeError("a message written in part")  # not expected (see above): the framing would be lost
    return True


def wait_readable(poller: select.poll | None, deadline: float | None) -> None:
    """Until the socket `poller` watches can be read; TimeoutError past `deadline` (no deadline: the read blocks)."""
    if poller is None or deadline is None:
        return
    if not poller.poll(max(1, math.ceil((deadline - time.monotonic()) * 1000))):
        raise TimeoutError


class Reader:
    """The messages arriving on one socket, in order. Several may come in one read (the worker writes a
    batch's requests back to back, the child streams its answers): the bytes past one message are
    the start of the next, kept for it. A message's descriptors come with its first bytes: the kernel
    ends a read after the part of a stream that carried descriptors, and never appends one to bytes
    already read, so the descriptors read while a message is assembled are that message's."""

    def __init__(self, sock: socket.socket, poller: select.poll | None = None) -> None:
        self.sock = sock
        self.poller = poller
        self.pending = bytearray()

    def receive(self, limit: int, deadline: float | None = None, want_fds: bool = False) -> tuple[bytes, list[int]]:
        """One message (and the descriptors sent with it); TimeoutError past `deadline`, EOFError if the
        peer left or broke the framing (a message announced past `limit`)."""
        fds: list[int] = []
        while True:
            if len(self.pending) >= _HEADER.size:
                (size,) = _HEADER.unpack_from(self.pending)
                if size > limit:
                    raise EOFError(f"message of {size} bytes, limit {limit}")
                end = _HEADER.size + size
                if len(self.pending) >= end:
                    message = bytes(memoryview(self.pending)[_HEADER.size : end])
                    del self.pending[:end]
                    return message, fds
            wait_readable(self.poller, deadline)
            if want_fds:
                data, got, _flags, _address = socket.recv_fds(self.sock, RECEIVE_BYTES, 1, socket.MSG_CMSG_CLOEXEC)
                fds += got
            else:
                data = self.sock.recv(RECEIVE_BYTES)
            if not data:
                raise EOFError
            self.pending += data

"""`sandbox/datagram.py::read_messages`: what the supervisor reads of a send, once, and what
it refuses as the kernel would. The "target" is this process: its buffers are real memory
read through process_vm_readv, exactly as a target's are."""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct

import pytest

from bubble.sandbox.datagram import MAX_BATCH, Message, Unsendable, read_messages
from bubble.sandbox.procmem import TargetMemory

PID = os.getpid()
MEM = TargetMemory()
_keep: list[object] = []


def buf(data: bytes) -> int:
    b = ctypes.create_string_buffer(data, len(data))
    _keep.append(b)
    return ctypes.addressof(b)


def sin(port: int, host: str = "127.0.0.1") -> bytes:
    return struct.pack("<HH4s8x", socket.AF_INET, socket.htons(port), socket.inet_aton(host))


def sin6(port: int, host: str = "::1") -> bytes:
    return struct.pack("<HHI16sI", socket.AF_INET6, socket.htons(port), 0,
                       socket.inet_pton(socket.AF_INET6, host), 0)  # fmt: skip


def msghdr(name: bytes | None, parts: list[bytes], control: bytes = b"", stride: int = 56) -> bytes:
    iov = b"".join(struct.pack("<QQ", buf(p), len(p)) for p in parts)
    return struct.pack(
        "<QI4xQQQQi4x",
        buf(name) if name else 0, len(name or b""), buf(iov) if parts else 0, len(parts),
        buf(control) if control else 0, len(control), 0,
    ) + bytes(stride - 56)  # fmt: skip


def test_sendto_reads_the_address_and_payload_once():
    msgs = read_messages(MEM, PID, "sendto", (3, buf(b"hello"), 5, 0, buf(sin(53)), 16))
    assert msgs == [Message("127.0.0.1", 53, b"hello")]
    # no address: the socket's peer decides (None)
    assert read_messages(MEM, PID, "sendto", (3, buf(b"x"), 1, 0, 0, 0)) == [
        Message(None, None, b"x")
    ]


def test_sendmsg_gathers_iovecs_and_maps_ipv4_in_ipv6():
    mapped = sin6(99, "::ffff:127.0.0.1")
    msgs = read_messages(MEM, PID, "sendmsg", (3, buf(msghdr(mapped, [b"ab", b"", b"cd"])), 0))
    assert msgs == [Message("127.0.0.1", 99, b"abcd")]
    assert read_messages(MEM, PID, "sendmsg", (3, buf(msghdr(sin6(7), [b"z"])), 0)) == [
        Message("::1", 7, b"z")
    ]


def test_sendmmsg_reads_each_message_and_caps_the_batch():
    vec = b"".join(msghdr(sin(1000 + i), [bytes([i])], stride=64) for i in range(MAX_BATCH + 6))
    msgs = read_messages(MEM, PID, "sendmmsg", (3, buf(vec), MAX_BATCH + 6, 0))
    assert len(msgs) == MAX_BATCH  # the caller sends the rest again
    assert msgs[5] == Message("127.0.0.1", 1005, b"\x05")
    assert read_messages(MEM, PID, "sendmmsg", (3, buf(vec), 0, 0)) == []


@pytest.mark.parametrize(
    ("name", "args", "err"),
    [
        ("sendto", lambda: (3, 8, 4, 0, buf(sin(9)), 16), errno.EFAULT),  # payload unmapped
        ("sendto", lambda: (3, buf(b"x"), 1, 0, 8, 16), errno.EFAULT),  # address unmapped
        ("sendto", lambda: (3, buf(b"x"), 1, 0, buf(sin(9)), 200), errno.EINVAL),  # too long
        ("sendto", lambda: (3, buf(b"x"), 1, 0, buf(sin(0)), 16), errno.EINVAL),  # port 0
        ("sendto", lambda: (3, buf(b"x"), 1, 0, buf(b"\x01\x00/tmp/s\x00"), 9), errno.EINVAL),
        ("sendto", lambda: (3, buf(b"x"), 1 << 20, 0, buf(sin(9)), 16), errno.EMSGSIZE),
        ("sendmsg", lambda: (3, 8, 0), errno.EFAULT),  # header unmapped
        ("sendmsg", lambda: (3, buf(msghdr(sin(9), [b"x"], b"\0" * 24)), 0), errno.EPERM),
        ("sendmsg", lambda: (3, buf(msghdr(sin(9), [b"x"] * 1025)), 0), errno.EMSGSIZE),
        (
            "sendmsg",
            lambda: (3, buf(msghdr(sin(9), [b"x" * 40000, b"y" * 30000])), 0),
            errno.EMSGSIZE,
        ),
    ],
)
def test_what_the_kernel_would_refuse_is_refused_with_its_errno(name, args, err):
    with pytest.raises(Unsendable) as caught:
        read_messages(MEM, PID, name, args())
    assert caught.value.err == err and caught.value.detail

"""Shared fixtures. Tests run on the CPU unless a test asks for a device."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _loopback(address) -> bool:
    """Whether a socket address stays on this machine's loopback (or is not an IP one)."""
    if not isinstance(address, tuple):
        return True  # a Unix socket path or an abstract name
    host = address[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0].removeprefix("::ffff:")).is_loopback
    except ValueError:
        return False  # "" or "0.0.0.0" binds every interface; a name may resolve anywhere


def _guard(name):
    original = getattr(socket.socket, name)

    def checked(self, address, *args):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address):
            raise AssertionError(f"a test tried socket.{name}({address!r}): tests use "
                                 "127.0.0.1 only")
        return original(self, address, *args)

    return original, checked


@pytest.fixture(autouse=True, scope="session")
def loopback_only():
    """No test binds, connects or sends to an address other than loopback (in this
    process; the Ray tests check their servers' sockets themselves)."""
    saved = {}
    for name in ("bind", "connect", "connect_ex"):
        saved[name], checked = _guard(name)
        setattr(socket.socket, name, checked)
    try:
        yield
    finally:
        for name, original in saved.items():
            setattr(socket.socket, name, original)


def _full_cifar_dir():
    """Where a full CIFAR-10 copy may be: $NBKIT_DATA, else the shared datasets folder
    that sits beside a checkout of this repository."""
    candidates = [os.environ.get("NBKIT_DATA"), REPO.parent / "shared" / "datasets"]
    for c in candidates:
        if c and (Path(c) / "cifar10-jpeg.tar.gz").is_file():
            return Path(c)
    return None


@pytest.fixture(scope="session")
def full_cifar_dir():
    path = _full_cifar_dir()
    if path is None:
        pytest.skip("full CIFAR-10 archive (cifar10-jpeg.tar.gz) not found; set NBKIT_DATA "
                    "to the folder that holds it")
    return path


@pytest.fixture(scope="module")
def one_thread():
    """Tiny nets on one torch thread: a second thread only adds synchronisation, most of
    all on a busy 2-core machine, and oversubscribes the cores when several test
    processes share them."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def mini():
    import nbkit

    return nbkit.data.load("cifar10-mini")


# CI runs property tests on a fixed example sequence, so a red run can be replayed exactly.
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    _hypothesis_settings.load_profile("ci")

"""The test suite's own guard: a socket bound or connected off loopback fails the test."""

import socket

import pytest


@pytest.mark.parametrize("address", [("0.0.0.0", 0), ("", 0), ("192.0.2.1", 9)])
def test_a_socket_off_loopback_is_refused(address):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s, \
            pytest.raises(AssertionError, match="127.0.0.1 only"):
        s.bind(address) if address[1] == 0 else s.connect(address)


def test_loopback_is_allowed():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        assert s.getsockname()[0] == "127.0.0.1"

"""Storage fixtures: a checkpoint to write, a misbehaving network in front of the S3 server."""

from __future__ import annotations

import contextlib
import re
import socket
import threading

import numpy as np
import pytest

import ckptlab as ck


def training_checkpoint(units: int, inputs: int, big: np.ndarray) -> ck.Checkpoint:
    """A Dense layer after one Adam step (kernel, bias, their slots, iter) and a larger value."""
    model = ck.layers.Dense(units)
    model(np.ones((2, inputs), np.float32))
    optimizer = ck.optimizers.Adam(0.1)
    optimizer.apply_gradients([(np.ones_like(v.numpy()), v) for v in (model.kernel, model.bias)])
    checkpoint = ck.Checkpoint(model=model, optimizer=optimizer)
    checkpoint.big = ck.Variable(big)
    return checkpoint


_REFUSED = (
    b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code>"
    b"<Message>Access Denied</Message></Error>"
)


class Held:
    """A request the network holds back until :meth:`release`."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        """The request reached the network (and waits)."""
        self.released = threading.Event()
        self.finished = threading.Event()
        """The client closed the connection the held request came on."""

    def release(self) -> None:
        """Let the request go on to the server."""
        self.released.set()


class Network:
    """An HTTP/1.1 relay on 127.0.0.1 in front of the S3 server that misbehaves on request.

    Each rule applies once, to the first request whose method matches and whose path contains
    a text: :meth:`refuse` answers it ``403 AccessDenied`` (and closes the connection),
    :meth:`hold` keeps it from the server until released, as a congested link would.
    """

    def __init__(self, upstream: str, prefix: str) -> None:
        self.prefix = prefix
        """The URL prefix whose requests go through the relay."""
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.rules: list[tuple[str, str, str, Held | None]] = []
        self.held: list[Held] = []
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def refuse(self, method: str, text: str, *, after: Held | None = None) -> None:
        """Refuse the next ``method`` request on a path containing ``text``.

        With ``after``, the refusal waits until that held request has arrived.
        """
        with self.lock:
            self.rules.append((method, text, "refuse", after))

    def hold(self, method: str, text: str) -> Held:
        """Hold the next ``method`` request on a path containing ``text`` until released."""
        held = Held()
        with self.lock:
            self.rules.append((method, text, "hold", held))
            self.held.append(held)
        return held

    def close(self) -> None:
        """Stop accepting connections and let every held request go."""
        self.listener.close()
        with self.lock:
            for held in self.held:
                held.release()

    def _rule(self, method: str, path: str) -> tuple[str | None, Held | None]:
        with self.lock:
            for index, (m, text, action, held) in enumerate(self.rules):
                if m == method and text in path:
                    del self.rules[index]
                    return action, held
        return None, None

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(self.upstream)
        except OSError:
            client.close()
            return

        def back() -> None:
            with server, contextlib.suppress(OSError):
                while data := server.recv(65536):
                    client.sendall(data)
                client.shutdown(socket.SHUT_RDWR)

        threading.Thread(target=back, daemon=True).start()
        pending, body, held_here = b"", 0, None
        try:
            while data := client.recv(65536):
                pending += data
                while pending:
                    if body:
                        server.sendall(pending[:body])
                        pending, body = pending[body:], max(0, body - len(pending))
                        continue
                    end = pending.find(b"\r\n\r\n")
                    if end < 0:
                        break
                    head, pending = pending[: end + 4], pending[end + 4 :]
                    method, path = head.split(b" ", 2)[:2]
                    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                    action, held = self._rule(method.decode(), path.decode())
                    if action == "refuse":
                        if held is not None:
                            held.arrived.wait(10)
                        reply = b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\n"
                        reply += b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(_REFUSED)
                        client.sendall(reply + _REFUSED)
                        return
                    if action == "hold" and held is not None:
                        held_here = held
                        held.arrived.set()
                        held.released.wait()
                    server.sendall(head)
                    body = int(length.group(1)) if length else 0
        except OSError:
            pass
        finally:
            client.close()
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_WR)
            if held_here is not None:
                held_here.finished.set()


@pytest.fixture
def network(s3_server, s3_prefix):
    """A :class:`Network` in front of the S3 server, serving ``s3_prefix`` (``network.prefix``)."""
    relay = Network(s3_server.endpoint, s3_prefix)
    ck.storage.set_storage_options(
        s3_prefix,
        **{**s3_server.storage_options, "endpoint_url": relay.endpoint},
    )
    yield relay
    ck.storage.set_storage_options(s3_prefix)
    relay.close()

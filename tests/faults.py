"""Fault injection for the durability tests: a TCP proxy whose link can be cut."""

import socket
import struct
import threading
from contextlib import suppress

# SO_LINGER on with a zero timeout: close() sends a RST, the peer sees the link drop at once.
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)


class CuttableProxy:
    """Forwards 127.0.0.1:<port> to a server; `cut()` drops every connection and resets new
    ones (the server looks down), `restore()` serves again; `cut_after()` arms a cut that
    the server's own bytes set off.

    The listening socket stays open while cut: were it closed, the kernel could hand its
    port to some other outgoing connection as an ephemeral port, and `restore()` could not
    bind it again."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._up = True
        # Bytes the server may still send before an armed cut; None: no cut armed.
        self._until_cut: int | None = None
        self._down_s = 0.0
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            self._up = False
            for sock in self._sockets:
                _reset(sock)
            self._sockets.clear()

    def restore(self) -> None:
        with self._lock:
            self._up = True

    def cut_after(self, server_bytes: int, down_s: float) -> None:
        """Once the server has sent `server_bytes` (over all connections, headers included),
        cut there, mid-message, and restore `down_s` seconds later. Unlike a cut made by the
        test's clock, it falls at the same place in the stream however slowly the client
        started or the machine ran."""
        with self._lock:
            self._until_cut, self._down_s = server_bytes, down_s

    def _let_through(self, data: bytes) -> tuple[bytes, bool]:
        """The part of the server's `data` that goes on, and whether the armed cut is due."""
        with self._lock:
            if self._until_cut is None:
                return data, False
            passed = data[: self._until_cut]
            self._until_cut -= len(passed)
            if self._until_cut > 0:
                return passed, False
            self._until_cut = None
            self.cuts += 1
            return passed, True

    def _cut_for_a_while(self) -> None:
        self.cut()
        timer = threading.Timer(self._down_s, self.restore)
        timer.daemon = True
        timer.start()

    def _accept(self) -> None:
        while True:
            client, _ = self._listener.accept()
            with self._lock:
                up = self._up
            if not up:
                _reset(client)
                continue
            try:
                server = socket.create_connection(self.target)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                if not self._up:
                    _reset(client)
                    server.close()
                    continue
                self._sockets.update((client, server))
            for source, sink in ((client, server), (server, client)):
                pipe = threading.Thread(
                    target=self._pipe, args=(source, sink, source is server), daemon=True
                )
                pipe.start()

    def _pipe(self, source: socket.socket, sink: socket.socket, from_server: bool) -> None:
        try:
            while data := source.recv(65536):
                cut_due = False
                if from_server:
                    data, cut_due = self._let_through(data)
                sink.sendall(data)
                if cut_due:
                    self._cut_for_a_while()
                    return
        except OSError:
            pass
        finally:
            with suppress(OSError):
                sink.shutdown(socket.SHUT_WR)


def _reset(sock: socket.socket) -> None:
    with suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
    # close() alone would not wake a pipe thread blocked in recv() on this socket (the
    # connection would live on through it); shutdown() does.
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()

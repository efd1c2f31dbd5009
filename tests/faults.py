"""Fault injection for the durability tests: a TCP proxy whose link can be cut."""

import socket
import struct
import threading
from contextlib import suppress

# SO_LINGER on with a zero timeout: close() sends a RST, the peer sees the link drop at once.
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)


class CuttableProxy:
    """Forwards 127.0.0.1:<port> to a server; `cut()` drops every connection and resets new
    ones (the server looks down), `restore()` serves again.

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
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
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

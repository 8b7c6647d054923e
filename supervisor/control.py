"""The control socket: a Unix stream socket speaking length-prefixed JSON (wire.py).

Who may talk to it: the socket file is mode 0660, and every connection's peer
credentials (SO_PEERCRED, SO_PEERGROUPS) are checked as well: root, the service's own user,
or a member of its group, as primary or supplementary group (`usermod -aG`). Each request gets exactly one reply; a malformed one gets an error reply
and the connection is closed. A client that says nothing for CLIENT_IDLE seconds, takes
more than REQUEST_LIMIT seconds to send one request (trickling a byte at a time would
otherwise hold a slot forever), or announces an oversized message, is dropped; at most
MAX_CLIENTS at once, and at most PER_PROCESS of them from one process, so that no one
client (a busy metrics helper, a runaway script) can take the slots `status` and `hangup`
need. None of this
can block the supervisor's loop: sockets are non-blocking and replies are buffered.
"""

from __future__ import annotations

import errno
import logging
import os
import selectors
import socket
import stat
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from callbridge.secret import appears_in, redact_values
from shm_ring import wire

log = logging.getLogger(__name__)

MAX_CLIENTS = 32
PER_PROCESS = 4
CLIENT_IDLE = 10.0
REQUEST_LIMIT = 5.0  # seconds from a request's first byte to its last
MAX_REQUESTS_PER_READ = 8  # a client pipelining requests cannot monopolise one loop pass
MAX_OUTBOX = 4 * 1024 * 1024  # a client that does not read its replies is dropped
# Out of descriptors (or kernel memory), accept() fails while the listener stays readable:
# the loop would spin on it. The listener rests this long, then is tried again.
ACCEPT_REST = 1.0
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_UCRED = struct.Struct("3i")
# The peer's supplementary groups, as the kernel holds them for the socket (Linux 4.13+;
# Python has no name for it). Not /proc/PID/status (the unit's ProtectProc=invisible hides
# other users' processes) and not /etc/group (groups given by setgroups() or PAM, and a
# lookup that may wait on a directory server).
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)
_MAX_GROUPS = 256  # Python caps getsockopt's buffer at 1024 bytes


def peer_groups(conn: socket.socket, gid: int) -> set[int]:
    """Every group the peer is in: its primary gid and its supplementary groups. Never a
    user database lookup (NSS may mean LDAP, on the supervisor's loop): when the kernel
    cannot say (before Linux 4.13, or over 256 groups), the primary gid alone."""
    groups = {gid}
    try:
        raw = conn.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, _MAX_GROUPS * 4)
        groups.update(struct.unpack(f"{len(raw) // 4}I", raw[: len(raw) // 4 * 4]))
    except OSError:
        pass
    return groups


@dataclass
class Client:
    sock: socket.socket
    uid: int
    pid: int = 0
    inbox: bytearray = field(default_factory=bytearray)
    outbox: bytearray = field(default_factory=bytearray)
    last_active: float = field(default_factory=time.monotonic)
    partial_since: float | None = None  # when the request now arriving began
    closing: bool = False


class ControlServer:
    def __init__(
        self, path: str, selector: selectors.BaseSelector, handle: Callable[[dict, int], dict]
    ) -> None:
        self.path = path
        self.selector = selector
        self.handle = handle
        self.clients: dict[int, Client] = {}
        self.sock = self._listen(path)
        self.resting_until: float | None = None  # not accepting until then (out of descriptors)
        self.short_of_resources = False  # said once; "accepting again" when it passes
        selector.register(self.sock, selectors.EVENT_READ, ("control", None))

    @staticmethod
    def _listen(path: str) -> socket.socket:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() or target.is_symlink():
            if not stat.S_ISSOCK(target.lstat().st_mode):
                raise OSError(f"{path} exists and is not a socket; refusing to replace it")
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
            except OSError:
                target.unlink()  # a stale socket left by a process that died
            else:
                raise OSError(f"another callbridge is already listening on {path}")
            finally:
                probe.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o117)  # created 0660, never briefly wider
        try:
            sock.bind(path)
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o660)
        sock.listen(16)
        sock.setblocking(False)
        return sock

    def close(self) -> None:
        for client in list(self.clients.values()):
            self._drop(client)
        if self.resting_until is None:
            self.selector.unregister(self.sock)
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def fds(self) -> list[int]:
        return [self.sock.fileno(), *self.clients]

    def _allowed(self, uid: int, groups: set[int]) -> bool:
        return uid in (0, os.geteuid()) or os.getegid() in groups

    def _refusal(self, pid: int, uid: int, groups: set[int]) -> str:
        if not self._allowed(uid, groups):
            return "permission denied"
        if len(self.clients) >= MAX_CLIENTS:
            return "too many clients"
        if sum(1 for c in self.clients.values() if c.pid == pid) >= PER_PROCESS:
            return f"too many connections from one process (at most {PER_PROCESS})"
        return ""

    def accept(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if exc.errno not in _OUT_OF_RESOURCES:
                raise
            self._rest(exc)
            return
        try:
            self._admit(conn)
        except BaseException:
            conn.close()  # never leak an accepted connection, whatever failed
            raise

    def _rest(self, exc: OSError) -> None:
        """Stop watching the listener for ACCEPT_REST; said once per shortage, not per pass."""
        self.selector.unregister(self.sock)
        self.resting_until = time.monotonic() + ACCEPT_REST
        if not self.short_of_resources:
            self.short_of_resources = True
            log.error(
                "control socket: cannot accept (%s); not accepting for %.0f s at a time until it passes",
                os.strerror(exc.errno),
                ACCEPT_REST,
            )

    def _admit(self, conn: socket.socket) -> None:
        if self.short_of_resources:
            self.short_of_resources = False
            log.info("control socket: accepting connections again")
        pid, uid, gid = _UCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
        why = self._refusal(pid, uid, peer_groups(conn, gid))
        if why:
            log.warning("control socket: refused a client (pid %d, uid %d, gid %d): %s", pid, uid, gid, why)
            try:
                conn.setblocking(False)
                conn.send(wire.encode({"ok": False, "error": why}))
            except OSError:
                pass
            conn.close()
            return
        conn.setblocking(False)
        client = Client(conn, uid, pid)
        self.clients[conn.fileno()] = client
        self.selector.register(conn, selectors.EVENT_READ, ("client", client))

    def on_event(self, client: Client, mask: int) -> None:
        if mask & selectors.EVENT_READ:
            self._read(client)
        if mask & selectors.EVENT_WRITE and client.sock.fileno() in self.clients:
            self._flush(client)

    def _read(self, client: Client) -> None:
        try:
            data = client.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(client)
            return
        client.last_active = now = time.monotonic()
        client.inbox += data
        try:
            frames = wire.split_frames(client.inbox)
            if not client.inbox:
                client.partial_since = None
            elif frames or client.partial_since is None:
                client.partial_since = now  # progress: a new request began
            if len(frames) > MAX_REQUESTS_PER_READ:
                raise wire.WireError(f"more than {MAX_REQUESTS_PER_READ} requests at once")
            for frame in frames:
                request = wire.decode(frame)
                try:
                    reply = self.handle(request, client.uid)
                except Exception as exc:  # one bad request must never take the supervisor down
                    log.exception("control socket: request failed")
                    reply = {"ok": False, "error": f"request failed: {type(exc).__name__}"}
                self._reply(client, reply)
        except wire.WireError as exc:
            log.warning("control socket: bad request: %s", exc)
            client.closing = True
            self._reply(client, {"ok": False, "error": f"bad request: {exc}"})

    def _reply(self, client: Client, reply: dict) -> None:
        if client.sock.fileno() not in self.clients:
            return
        # Defence in depth: no reply carries a secret. Redacting value by value costs a check
        # per string (a status of hundreds of calls, on the loop); the finished text is
        # checked once, and only a reply a secret appears in is redacted, and framed again.
        framed = wire.encode(reply)
        if appears_in(framed[wire.LENGTH.size :].decode()):
            framed = wire.encode(redact_values(reply))
        client.outbox += framed
        if len(client.outbox) > MAX_OUTBOX:
            log.warning("control socket: dropping a client that does not read its replies")
            self._drop(client)
            return
        self._flush(client)

    def _flush(self, client: Client) -> None:
        try:
            sent = client.sock.send(client.outbox)
            del client.outbox[:sent]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._drop(client)
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.outbox else 0)
        if client.closing and not client.outbox:
            self._drop(client)
            return
        self.selector.modify(client.sock, events, ("client", client))

    def tick(self) -> None:
        now = time.monotonic()
        if self.resting_until is not None and now >= self.resting_until:
            self.resting_until = None
            self.selector.register(self.sock, selectors.EVENT_READ, ("control", None))
        for client in list(self.clients.values()):
            if now - client.last_active > CLIENT_IDLE:
                self._drop(client)
            elif client.partial_since is not None and now - client.partial_since > REQUEST_LIMIT:
                log.warning("control socket: dropping a client whose request took over %.0f s", REQUEST_LIMIT)
                self._drop(client)

    def _drop(self, client: Client) -> None:
        fd = client.sock.fileno()
        if self.clients.pop(fd, None) is not None:
            self.selector.unregister(client.sock)
        client.sock.close()

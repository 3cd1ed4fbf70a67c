"""A token endpoint on 127.0.0.1 that misbehaves on purpose, one chosen fault per POST.

It is a raw asyncio-streams server rather than an HTTP framework, so it can fail
at the byte level: stall after reading a request, reset the connection halfway
through a body, stream a chunked body that never ends, refuse connections
(by closing its listening socket and reopening it later on the same port).

Each POST takes the next fault from :attr:`MisbehavingProvider.faults`; when
the list is empty it answers like a well-behaved provider (RFC 6749 §5.1: a
JSON body with a fresh access token and a rotated refresh token). So a test
first obtains a credential with an empty list, then queues the fault that the
refresh must meet.

Every value it issues or receives (tokens, codes, verifiers, client secrets)
goes to ``leak_watch`` so the session-wide scan looks for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import secrets
import socket
import struct
from typing import Optional
from urllib.parse import parse_qsl

from tests.support import leak_watch

__all__ = ["Fault", "MisbehavingProvider"]

_TOKEN_PATH = "/token"
_MAX_REQUEST = 64 * 1024
#: The "10 MB body" cell.
HUGE_BODY_BYTES = 10 * 1024 * 1024
#: How long a stalled answer waits before giving up on its own (the clients
#: under test give up long before; this only bounds a broken test).
_STALL_SECONDS = 30.0
_DRIP_INTERVAL = 0.05


class Fault(enum.Enum):
    """What the endpoint does with one POST."""

    #: HTTP 500 with a plain-text body.
    STATUS_500 = "500"
    #: HTTP 502 from a "gateway", HTML body.
    STATUS_502 = "502"
    #: HTTP 504 from a "gateway", HTML body.
    STATUS_504 = "504"
    #: HTTP 503 with ``Retry-After: 2`` (RFC 9110 §10.2.3).
    STATUS_503_RETRY_AFTER = "503 + Retry-After"
    #: HTTP 429 (RFC 6585 §4), no Retry-After.
    STATUS_429 = "429"
    #: Nothing listens on the port until the client's retry pause.
    CONNECT_REFUSED = "connect refused"
    #: The request is read in full, then nothing is ever sent.
    READ_TIMEOUT = "read timeout"
    #: Headers promise 4096 bytes; 100 arrive, then a TCP reset.
    RESET_MID_BODY = "reset mid-body"
    #: A chunked 200 that drips a byte every 50 ms and never ends.
    ENDLESS_BODY = "body never ends"
    #: HTTP 200 with an HTML login page.
    HTML_200 = "HTML 200"
    #: HTTP 200, ``application/json``, but not JSON.
    INVALID_JSON = "invalid JSON"
    #: HTTP 200, 10 MB of JSON-looking bytes, chunked (no Content-Length).
    HUGE_BODY = "10 MB body"
    #: HTTP 200, valid JSON without ``access_token``.
    NO_ACCESS_TOKEN = "no access_token"
    #: HTTP 200 carrying an OAuth error (GitHub's ``bad_verification_code``).
    ERROR_IN_200 = "error inside 200"
    #: HTTP 400 ``invalid_grant`` (RFC 6749 §5.2).
    INVALID_GRANT = "invalid_grant"
    #: HTTP 401 ``invalid_client`` (RFC 6749 §5.2).
    INVALID_CLIENT = "invalid_client"


class MisbehavingProvider:
    """``async with MisbehavingProvider() as provider:`` serves ``provider.token_endpoint``.

    Attributes a test reads: :attr:`posts` (the form fields of every POST
    received, faulty or not), :attr:`open_connections` (connections not yet
    closed by either side), :attr:`issued` (access tokens issued, in order).
    """

    def __init__(self) -> None:
        #: Faults for the next POSTs, consumed front first; empty = behave.
        self.faults: list[Fault] = []
        self.posts: list[dict[str, str]] = []
        self.issued: list[str] = []
        self.open_connections = 0
        self.port = 0
        self._server: Optional[asyncio.AbstractServer] = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()

    @property
    def token_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}{_TOKEN_PATH}"

    @property
    def authorization_endpoint(self) -> str:
        # Never visited: the test plays the person and makes up the code.
        return f"http://127.0.0.1:{self.port}/authorize"

    async def __aenter__(self) -> MisbehavingProvider:
        await self.listen()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._stop.set()
        await self.stop_listening()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def listen(self) -> None:
        """Accept connections (again), on the same port once one was chosen."""
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop_listening(self) -> None:
        """Close the listening socket: connects are refused until :meth:`listen`."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def refuse_until_next_pause(self) -> None:
        """The CONNECT_REFUSED fault: stop listening now; the test's sleep hook
        calls :meth:`listen` again during the client's retry pause."""
        await self.stop_listening()

    # --- serving -------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.open_connections += 1
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client gave up on us: that is what several faults are for
        finally:
            self.open_connections -= 1
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > _MAX_REQUEST:
            return
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, path, _ = request_line.split(" ", 2)
        headers = {}
        for line in header_lines:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        if method != "POST" or path != _TOKEN_PATH:
            await _respond(writer, 404, b"not found", "text/plain")
            return
        form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        for name in ("code", "code_verifier", "refresh_token", "client_secret"):
            leak_watch.remember_secret(form.get(name))
        self.posts.append(form)
        fault = self.faults.pop(0) if self.faults else None
        await self._answer(fault, reader, writer)

    async def _answer(
        self, fault: Optional[Fault], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if fault is None:
            await _respond(writer, 200, json.dumps(self._issue()).encode(), "application/json")
        elif fault is Fault.STATUS_500:
            await _respond(writer, 500, b"Internal Server Error", "text/plain")
        elif fault is Fault.STATUS_502:
            await _respond(writer, 502, b"<html><body>502 Bad Gateway</body></html>", "text/html")
        elif fault is Fault.STATUS_504:
            await _respond(writer, 504, b"<html><body>504 Gateway Timeout</body></html>",
                           "text/html")
        elif fault is Fault.STATUS_503_RETRY_AFTER:
            await _respond(writer, 503, b"busy", "text/plain", extra=[("Retry-After", "2")])
        elif fault is Fault.STATUS_429:
            await _respond(writer, 429, b"slow down", "text/plain")
        elif fault is Fault.READ_TIMEOUT:
            await self._stall(reader)
        elif fault is Fault.RESET_MID_BODY:
            writer.write(_head(200, "application/json", [("Content-Length", "4096")]))
            writer.write(b'{"access_token": "' + b"a" * 80)
            await writer.drain()
            _reset(writer)
        elif fault is Fault.ENDLESS_BODY:
            writer.write(_head(200, "application/json", [("Transfer-Encoding", "chunked")]))
            writer.write(b"1\r\n{\r\n")
            while not self._stop.is_set():
                await writer.drain()
                writer.write(b"1\r\n \r\n")
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), _DRIP_INTERVAL)
                if reader.at_eof():
                    return  # the client closed its side
        elif fault is Fault.HTML_200:
            await _respond(writer, 200, b"<!DOCTYPE html><html><body>Sign in</body></html>",
                           "text/html")
        elif fault is Fault.INVALID_JSON:
            await _respond(writer, 200, b'{"access_token": "abc", ', "application/json")
        elif fault is Fault.HUGE_BODY:
            writer.write(_head(200, "application/json", [("Transfer-Encoding", "chunked")]))
            chunk = b" " * (64 * 1024)
            frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
            for _ in range(HUGE_BODY_BYTES // len(chunk)):
                writer.write(frame)
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        elif fault is Fault.NO_ACCESS_TOKEN:
            await _respond(writer, 200, b'{"token_type": "Bearer", "expires_in": 3600}',
                           "application/json")
        elif fault is Fault.ERROR_IN_200:
            await _respond(writer, 200, json.dumps({
                "error": "bad_verification_code",
                "error_description": "The code passed is incorrect or expired.",
            }).encode(), "application/json")
        elif fault is Fault.INVALID_GRANT:
            await _respond(writer, 400, b'{"error": "invalid_grant"}', "application/json")
        elif fault is Fault.INVALID_CLIENT:
            await _respond(writer, 401, b'{"error": "invalid_client"}', "application/json",
                           extra=[("WWW-Authenticate", 'Basic realm="token"')])
        else:  # CONNECT_REFUSED is played before the connection exists
            raise AssertionError(f"no answer for {fault}")

    async def _stall(self, reader: asyncio.StreamReader) -> None:
        """Send nothing until the client closes, the server stops, or a long while."""
        eof = asyncio.ensure_future(reader.read())
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({eof, stop}, timeout=_STALL_SECONDS,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            eof.cancel()
            stop.cancel()

    def _issue(self) -> dict[str, object]:
        access = "at-" + secrets.token_urlsafe(24)
        refresh = "rt-" + secrets.token_urlsafe(24)
        leak_watch.remember_secret(access)
        leak_watch.remember_secret(refresh)
        self.issued.append(access)
        return {"access_token": access, "token_type": "Bearer", "expires_in": 3600,
                "refresh_token": refresh, "scope": "mail.read"}


def _head(status: int, content_type: str, extra: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
             f"Content-Type: {content_type}", "Cache-Control: no-store",
             # One request per connection: an idle pooled connection must not
             # look like something left pending.
             "Connection: close"]
    lines += [f"{name}: {value}" for name, value in extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
            429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable", 504: "Gateway Timeout"}


async def _respond(writer: asyncio.StreamWriter, status: int, body: bytes, content_type: str,
                   extra: Optional[list[tuple[str, str]]] = None) -> None:
    writer.write(_head(status, content_type,
                       [("Content-Length", str(len(body))), *(extra or [])]) + body)
    await writer.drain()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST instead of a FIN (SO_LINGER with a zero timeout)."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport = writer.transport
    transport.abort()

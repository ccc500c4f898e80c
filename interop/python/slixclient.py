"""Thin glue around slixmpp's ClientXMPP for the tests: TCP with STARTTLS only, weft's
certificate trusted explicitly, and a record of what the client really sent and received,
so tests assert the SASL mechanism instead of assuming it."""
import asyncio
import copy
import ssl
import time

from slixmpp import ClientXMPP
from slixmpp.features.feature_mechanisms.stanza import Auth

from weft_env import C2S_PORT, CA_FILE, PASSWORD, jid_of

# Events that end a login attempt one way or the other (all are slixmpp's own names).
_FAILURES = ("failed_all_auth", "ssl_invalid_chain", "connection_failed", "disconnected")


class Client(ClientXMPP):
    def __init__(self, user: str, *, sasl_mech: str | None = None, resource: str | None = None,
                 trust_weft: bool = True):
        jid = jid_of(user) + (f"/{resource}" if resource else "")
        super().__init__(jid, PASSWORD, sasl_mech=sasl_mech)
        # weft's c2s port speaks RFC 6120 with STARTTLS: no Direct TLS attempt first, and
        # never a plaintext stream (slixmpp's defaults would try Direct TLS, then STARTTLS).
        self.enable_direct_tls = False
        self.enable_starttls = True
        self.enable_plaintext = False
        # Trust exactly weft's generated certificate, nothing from the system store; the
        # context keeps CERT_REQUIRED and hostname checks (the name checked is the JID's
        # domain, `localhost`, although we connect to 127.0.0.1). trust_weft=False keeps the
        # system store only, which must make the handshake fail.
        self.ssl_context = (ssl.create_default_context(cafile=CA_FILE) if trust_weft
                            else ssl.create_default_context())
        self.register_plugin("xep_0199")  # ping
        self.sent_auth: list[str] = []  # mechanism of each <auth/> sent
        self.sent_gs2: list[bytes] = []  # the GS2 header (channel binding flag) of each
        self.sasl_failures: list[str] = []  # condition of each SASL <failure/> received
        self.add_filter("out", self._watch_out)
        self.add_event_handler("failed_auth", lambda f: self.sasl_failures.append(f["condition"]))
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.add_event_handler("message", self.inbox.put_nowait)
        # Every stanza received and sent, in order, as copies (handlers may change the
        # originals), so tests can assert on the wire, not only on slixmpp's reading of it.
        self.wire_in: list = []
        self.wire_out: list = []
        self._wire_changed = asyncio.Event()
        self.add_filter("in", self._record_in)
        self.add_filter("out", self._record_out)

    def _watch_out(self, stanza):
        if isinstance(stanza, Auth):
            self.sent_auth.append(stanza["mechanism"])
            # SCRAM's client-first-message: "gs2-cbind-flag,authzid,n=user,r=nonce".
            value = stanza["value"]  # base64-decoded by slixmpp (str for PLAIN)
            self.sent_gs2.append(b",".join(value.split(b",")[:2]) if isinstance(value, bytes) else b"")
        return stanza

    def _record_in(self, stanza):
        self.wire_in.append(copy.copy(stanza))
        self._wire_changed.set()
        return stanza

    def _record_out(self, stanza):
        self.wire_out.append(copy.copy(stanza))
        return stanza

    def mark(self) -> int:
        """Where the received record ends now: pass it as `since` to look only at what follows."""
        return len(self.wire_in)

    def received(self, match, since: int = 0) -> list:
        """The stanzas received after `since` for which `match` is true."""
        return [s for s in self.wire_in[since:] if match(s)]

    async def expect(self, match, what: str, since: int = 0, timeout: float = 5):
        """The first stanza received after `since` for which `match` is true, waiting up to
        `timeout` seconds for it; fails naming `what` and listing what did arrive."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.received(match, since)
            if found:
                return found[0]
            self._wire_changed.clear()
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise TimeoutError
                await asyncio.wait_for(self._wire_changed.wait(), left)
            except TimeoutError:
                got = "\n  ".join(str(s) for s in self.wire_in[since:]) or "nothing"
                raise AssertionError(f"{self.boundjid}: no {what} within {timeout}s; "
                                     f"received instead:\n  {got}") from None

    async def first_event(self, names, timeout: float):
        """Waits for the first of `names`; returns (name, data). Raises TimeoutError."""
        done = asyncio.get_running_loop().create_future()
        handlers = []
        for name in names:
            def handler(data, name=name):
                if not done.done():
                    done.set_result((name, data))
            handlers.append((name, handler))
            self.add_event_handler(name, handler)
        try:
            return await asyncio.wait_for(done, timeout)
        finally:
            for name, handler in handlers:
                self.del_event_handler(name, handler)

    async def connect_until(self, names, timeout: float):
        """Connects to weft's STARTTLS port; returns the first of the events `names`."""
        self.connect(host="127.0.0.1", port=C2S_PORT)
        return await self.first_event(names, timeout)

    async def start(self, timeout: float = 15):
        """Connects and resolves once bound (session_start); raises on any failure event."""
        name, data = await self.connect_until(("session_start", *_FAILURES), timeout)
        if name != "session_start":
            self.cancel_connection_attempt()
            raise AssertionError(f"{self.boundjid}: login failed with slixmpp event {name!r}: {data!r}")
        return self

    async def go_online(self, **presence):
        """Initial presence (slixmpp's send_presence arguments: ppriority=, pshow=, ...), then a
        ping round trip: weft handles a session's stanzas in order, so the pong proves the
        presence was processed before anyone sends to the bare JID."""
        self.send_presence(**presence)
        await self.sync()

    async def sync(self):
        """A ping round trip to the server: everything this session sent before is processed."""
        await self.plugin["xep_0199"].send_ping(self.boundjid.domain, timeout=5)

    async def next_message(self, body: str, timeout: float = 5):
        async def wait():
            while True:
                msg = await self.inbox.get()
                if msg["body"] == body:
                    return msg
        try:
            return await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"{self.boundjid}: no message {body!r} within {timeout}s") from None

    async def stop(self):
        """Closes the stream (</stream:stream>, waiting up to 1 s for weft's) and cancels any
        reconnection attempt. Never raises: cleanup must not mask a test's own failure."""
        self.cancel_connection_attempt()
        try:
            await asyncio.wait_for(self.disconnect(wait=1), 5)
        except Exception:  # noqa: BLE001 - best effort
            self.abort()

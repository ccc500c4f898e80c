"""slixmpp (Python, MIT) against weft's XEP-0198 stream management over TCP with STARTTLS:
slixmpp's own xep_0198 plugin enables acks and resumption, loses its connection abruptly in
the middle of a conversation while the other party keeps sending, reconnects and resumes, and
must have seen every message exactly once, in order, without binding a new session.

slixmpp drives the protocol (its plugin counts, acks, sends <resume/> with its 'h' and
re-sends what weft did not acknowledge); the test asserts on slixmpp's events and on the
elements that went over the wire. Accounts are the test's own (sm-* in run.sh's USERS)."""
import asyncio
import functools

from slixmpp import Iq, Message

from slixclient import Client
from weft_env import jid_of

NS_SM = "urn:xmpp:sm:3"


def run(coro_fn):
    """Runs an async test on a fresh event loop, bounded so a missing reply fails, not hangs."""
    @functools.wraps(coro_fn)
    def wrapper(*args, **kwargs):
        asyncio.run(asyncio.wait_for(coro_fn(*args, **kwargs), 60))
    return wrapper


class SmClient(Client):
    """A Client with slixmpp's XEP-0198 plugin, recording the SM elements (not stanzas, so
    not in wire_in/wire_out) that went by, and every message body in arrival order."""

    def __init__(self, user: str, resource: str):
        super().__init__(user, resource=resource)
        self.register_plugin("xep_0198")
        self.sm_events: list[str] = []
        for name in ("sm_enabled", "session_resumed", "sm_failed", "session_start"):
            self.add_event_handler(name, lambda _e, name=name: self.sm_events.append(name))
        self.bodies: list[str] = []
        self.add_event_handler("message", lambda m: self.bodies.append(m["body"]))
        self.raw_out: list[str] = []
        self.raw_in: list[str] = []
        self.add_filter("in", self._raw_in)

    def send_raw(self, data):
        self.raw_out.append(data if isinstance(data, str) else data.decode())
        super().send_raw(data)

    def _raw_in(self, stanza):
        self.raw_in.append(str(stanza))
        return stanza


async def until(check, what: str, timeout: float = 10):
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


def chat(sender: Client, to: str, n: int):
    sender.send_message(mto=to, mbody=f"n{n}", mtype="chat")


@run
async def test_resumption_after_an_abrupt_loss_delivers_every_message_once_in_order():
    ada = SmClient("sm-ada", "phone")
    bea = Client("sm-bea", resource="desk")
    try:
        await ada.start()
        await until(lambda: "sm_enabled" in ada.sm_events, "slixmpp's sm_enabled")
        sm = ada.plugin["xep_0198"]
        assert sm.sm_id, "weft granted resumption: an SM-ID"
        ada_jid = ada.boundjid.full
        await ada.go_online()
        await bea.start()

        for n in range(1, 21):
            chat(bea, ada_jid, n)
        await until(lambda: len(ada.bodies) >= 10, "ada reading the first messages")
        # The connection goes away without </stream:stream>, while bea keeps sending.
        ada.abort()
        for n in range(21, 51):
            chat(bea, ada_jid, n)
        await bea.sync()
        errors = [s for s in bea.wire_in if isinstance(s, Message) and s["type"] == "error"]
        assert errors == [], f"weft kept ada's messages while she was away: {errors}"

        binds_before = sum(1 for s in ada.wire_out if isinstance(s, Iq) and s.xml.find(
            "{urn:ietf:params:xml:ns:xmpp-bind}bind") is not None)
        sent_before = len(ada.raw_out)
        name, _ = await ada.connect_until(("session_resumed", "session_start", "sm_failed",
                                           "failed_all_auth", "connection_failed"), 15)
        assert name == "session_resumed", f"slixmpp resumed, got {name}: {ada.sm_events}"
        resumes = [x for x in ada.raw_out[sent_before:] if "<resume" in x]
        assert len(resumes) == 1 and NS_SM in resumes[0], ada.raw_out[sent_before:]
        binds_after = sum(1 for s in ada.wire_out if isinstance(s, Iq) and s.xml.find(
            "{urn:ietf:params:xml:ns:xmpp-bind}bind") is not None)
        assert binds_after == binds_before, "a resumed session binds nothing"
        assert ada.boundjid.full == ada_jid

        await until(lambda: len(ada.bodies) >= 50, "all fifty messages")
        await ada.sync()
        assert ada.bodies == [f"n{n}" for n in range(1, 51)], ada.bodies

        # The session goes on: bea still reaches the same full JID, and ada's acks flow.
        chat(bea, ada_jid, 51)
        await until(lambda: ada.bodies[-1:] == ["n51"], "a message after the resumption")
        # Everything ada sent (on both streams) is acknowledged when she asks.
        sm.request_ack()
        await until(lambda: sm.last_ack == sm.seq and sm.seq > 0, "weft acknowledging ada's stanzas")
        assert not sm.unacked_queue, list(sm.unacked_queue)
    finally:
        await asyncio.gather(ada.stop(), bea.stop())

"""slixmpp's ComponentXMPP (Python, MIT) as a XEP-0114 external component of weft: it connects
to weft's component listener with the shared secret and serves its own domain; a slixmpp
client of weft sends it a message, a software version query (XEP-0092) and a disco#info query
(XEP-0030), and gets the component's answers. Also: weft lists the component in its
disco#items, refuses a wrong secret, and answers for the component while it is away.

Neither weft's Rust tests nor the node clients speak the component side: this is the peer we
did not write."""
import asyncio
import functools
import uuid

from slixmpp import ComponentXMPP
from slixmpp.exceptions import IqError

from slixclient import Client
from weft_env import COMPONENT_DOMAIN, COMPONENT_PORT, COMPONENT_SECRET, DOMAIN

GATEWAY_NAME = "weft interop gateway"


def run(coro_fn):
    """Runs an async test on a fresh event loop, bounded so a missing reply fails, not hangs."""
    @functools.wraps(coro_fn)
    def wrapper(*args, **kwargs):
        asyncio.run(asyncio.wait_for(coro_fn(*args, **kwargs), 60))
    return wrapper


class Gateway(ComponentXMPP):
    """A tiny echo gateway: answers every message at its domain, and disco and version."""

    def __init__(self, secret: str = COMPONENT_SECRET):
        super().__init__(COMPONENT_DOMAIN, secret)
        # weft's component port is plain TCP (as XEP-0114 and Prosody's 5347): without this
        # slixmpp would first try Direct TLS on it.
        self.enable_direct_tls = False
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0092", {"software_name": GATEWAY_NAME, "version": "1.0"})
        self.plugin["xep_0030"].add_identity(category="gateway", itype="echo", name=GATEWAY_NAME)
        self.messages: list = []
        self.add_event_handler("message", self._echo)

    def _echo(self, msg):
        self.messages.append(msg)
        if msg["type"] in ("chat", "normal"):
            # reply() swaps the addresses: the answer comes from the JID the client wrote to.
            msg.reply(f"echo: {msg['body']}").send()

    async def start(self, timeout: float = 15):
        """Connects and resolves once weft accepted the handshake; raises otherwise."""
        name, data = await self.connect_until(("session_start", "stream_error", "disconnected"), timeout)
        if name != "session_start":
            raise AssertionError(f"component not accepted: slixmpp event {name!r}: {data!r}")
        return self

    async def connect_until(self, names, timeout: float):
        done = asyncio.get_running_loop().create_future()
        for name in names:
            def handler(data, name=name):
                if not done.done():
                    done.set_result((name, data))
            self.add_event_handler(name, handler, disposable=True)
        self.connect(host="127.0.0.1", port=COMPONENT_PORT)
        return await asyncio.wait_for(done, timeout)

    async def stop(self):
        self.cancel_connection_attempt()
        try:
            await asyncio.wait_for(self.disconnect(wait=1), 5)
        except Exception:  # noqa: BLE001 - best effort
            self.abort()


def client(user: str) -> Client:
    c = Client(user)
    c.register_plugin("xep_0030")
    c.register_plugin("xep_0092")
    return c


@run
async def test_a_slixmpp_component_receives_and_answers_a_clients_stanzas():
    gateway = Gateway()
    ana = client("comp-ana")
    try:
        await gateway.start()
        await ana.start()
        assert gateway.sessionstarted  # weft sent <handshake/>

        # A message to a JID at the component's domain reaches the component, and its echo
        # comes back to the client from that JID.
        body = f"hello {uuid.uuid4()}"
        to = f"echo@{COMPONENT_DOMAIN}"
        ana.send_message(mto=to, mbody=body, mtype="chat")
        echo = await ana.next_message(f"echo: {body}")
        assert str(echo["from"]) == to
        assert str(echo["to"]) == ana.boundjid.full
        got = gateway.messages[-1]
        assert got["body"] == body
        assert str(got["from"]) == ana.boundjid.full  # stamped by weft

        # XEP-0092 and XEP-0030 queries to the component's domain are answered by slixmpp.
        version = await ana.plugin["xep_0092"].get_version(COMPONENT_DOMAIN, timeout=5)
        assert version["type"] == "result"
        assert str(version["from"]) == COMPONENT_DOMAIN
        assert version["software_version"]["name"] == GATEWAY_NAME
        info = await ana.plugin["xep_0030"].get_info(jid=COMPONENT_DOMAIN, timeout=5)
        identities = {(cat, typ, name) for cat, typ, _lang, name in info["disco_info"]["identities"]}
        assert ("gateway", "echo", GATEWAY_NAME) in identities, identities

        # weft's own disco#items lists the component.
        items = await ana.plugin["xep_0030"].get_items(jid=DOMAIN, timeout=5)
        listed = {str(jid) for jid, _node, _name in items["disco_items"]["items"]}
        assert COMPONENT_DOMAIN in listed, listed
    finally:
        await asyncio.gather(gateway.stop(), ana.stop())


@run
async def test_a_wrong_secret_is_refused():
    impostor = Gateway(secret="not the secret")
    errors = []
    impostor.add_event_handler("stream_error", errors.append)
    try:
        name, _ = await impostor.connect_until(("session_start", "disconnected"), 15)
        assert name == "disconnected", f"a wrong secret was accepted ({name})"
        assert not impostor.sessionstarted
        assert [e["condition"] for e in errors] == ["not-authorized"], errors
    finally:
        await impostor.stop()


@run
async def test_stanzas_for_a_component_that_is_away_are_answered_with_errors():
    ana = client("comp-ana")
    try:
        await ana.start()
        try:
            await ana.plugin["xep_0092"].get_version(COMPONENT_DOMAIN, timeout=5)
            raise AssertionError("an IQ to a component that is not connected got a result")
        except IqError as e:
            assert e.iq["error"]["condition"] == "service-unavailable", e.iq
    finally:
        await ana.stop()

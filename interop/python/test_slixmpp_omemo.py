"""slixmpp with slixmpp-omemo (XEP-0384 OMEMO, AGPL-3.0, run here as an external peer like any
other client; none of its code is in this repository) through weft: two accounts become mutual
contacts, each publishes its OMEMO device lists and bundles to its PEP service (XEP-0163 with
publish-options: open access, max_items, item ids), learns the other's device list from PEP
notifications (+notify through XEP-0115 caps) alone, and then:

1. Ben logs out; Ana starts the encrypted conversation while he is offline (so her session is
   built from his bundle, fetched from weft, and the key exchange waits in offline storage);
2. Ben logs in again with the same device, receives and decrypts it, answers encrypted;
3. a few more messages both ways, each decrypted to exactly what was sent.

Every stanza both clients sent and received is checked to hold no plaintext, only the OMEMO
<encrypted/> element (and the plugin's fallback body), and so is Ben's XEP-0313 archive.
Accounts are the test's own (omemo-* in run.sh's USERS)."""
import asyncio
import functools
import inspect
import time

from omemo.storage import Just, Maybe, Nothing, Storage
from slixmpp import JID, Message
from slixmpp.plugins import register_plugin
from slixmpp_omemo import XEP_0384

from slixclient import Client
from weft_env import jid_of

NS_OLDMEMO = "eu.siacs.conversations.axolotl"
NS_TWOMEMO = "urn:xmpp:omemo:2"
NS_MAM = "urn:xmpp:mam:2"
# The device-list nodes the plugin publishes and wants notifications of (+notify in its caps).
DEVICE_LIST_NODES = (f"{NS_OLDMEMO}.devicelist", f"{NS_TWOMEMO}:devices")


def run(coro_fn):
    """Runs an async test on a fresh event loop, bounded so a missing reply fails, not hangs."""
    @functools.wraps(coro_fn)
    def wrapper(*args, **kwargs):
        asyncio.run(asyncio.wait_for(coro_fn(*args, **kwargs), 60))
    return wrapper


class MemoryStorage(Storage):
    """python-omemo's key/value storage in a dict: one per device, kept by the test across
    logins so that a client that logs in again is the same OMEMO device."""

    def __init__(self):
        super().__init__()
        self.data: dict = {}

    async def _load(self, key: str) -> Maybe:
        return Just(self.data[key]) if key in self.data else Nothing()

    async def _store(self, key: str, value) -> None:
        self.data[key] = value

    async def _delete(self, key: str) -> None:
        self.data.pop(key, None)


class OmemoPlugin(XEP_0384):
    """The plugin with its two abstract parts filled in: the storage comes from the plugin's
    config (`omemo_storage`), trust is blind trust before verification (BTBV)."""

    default_config = {**XEP_0384.default_config, "omemo_storage": None}

    @property
    def storage(self) -> Storage:
        return self.omemo_storage

    @property
    def _btbv_enabled(self) -> bool:
        return True

    async def _prompt_manual_trust(self, manually_trusted, identifier) -> None:
        # Never called with BTBV on, as no device is ever verified or distrusted here.
        raise AssertionError(f"manual trust asked for {manually_trusted}")


register_plugin(OmemoPlugin)  # under its name, "xep_0384", for Client.register_plugin


async def omemo_client(user: str, storage: MemoryStorage) -> Client:
    """Bound, OMEMO set up (device list and bundle published to weft), online, roster known."""
    c = Client(user, resource="omemo")
    c.register_plugin("xep_0059")
    c.register_plugin("xep_0313")
    c.register_plugin("xep_0384", pconfig={"omemo_storage": storage})
    c.auto_authorize = True
    c.auto_subscribe = True
    initialized = asyncio.get_running_loop().create_future()
    c.add_event_handler("omemo_initialized",
                        lambda _: initialized.done() or initialized.set_result(True))
    await c.start()
    try:
        # The plugin starts at session bind: it reads its own device lists from weft, then
        # publishes them and its bundles (publish-options as preconditions).
        await asyncio.wait_for(initialized, 20)
    except TimeoutError:
        raise AssertionError(f"{user}: OMEMO set-up did not finish within 20s") from None
    # slixmpp hashes its caps (XEP-0115) when the +notify features are added at plugin load,
    # before the other plugins' features are in, and then answers the caps query with all of
    # them: a verification string that does not match, which weft rightly ignores (§5.4), and
    # with it the +notify features. Hashed again now, the caps match what the client answers.
    await c.plugin["xep_0115"].update_caps(broadcast=False)
    await c.get_roster(timeout=5)
    await c.go_online()
    return c


async def device_ids(c: Client, bare: str) -> set[int]:
    manager = await c.plugin["xep_0384"].get_session_manager()
    return {d.device_id for d in await manager.get_device_information(bare)}


async def own_device_id(c: Client) -> int:
    manager = await c.plugin["xep_0384"].get_session_manager()
    return (await manager.get_own_device_information())[0].device_id


async def until(check, what: str, timeout: float = 10):
    """Polls `check` (a function, async or not) until it is true; fails naming `what`."""
    deadline = time.monotonic() + timeout
    while not await _value(check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.05)


def encrypted(stanza) -> bool:
    return stanza.name == "message" and stanza.xml.find(f"{{{NS_OLDMEMO}}}encrypted") is not None


async def send_encrypted(sender: Client, to: str, text: str) -> Message:
    """Encrypts a chat message to `to`'s bare JID with the plugin and sends it; returns what went
    on the wire."""
    plain = sender.make_message(mto=JID(to), mbody=text, mtype="chat")
    message, errors = await sender.plugin["xep_0384"].encrypt_message(plain, JID(to))
    assert not errors, f"{sender.boundjid}: encryption errors: {errors}"
    assert message is not None, f"{sender.boundjid}: nothing to send"
    message.send()
    return message


async def next_plaintext(c: Client, sender: str, timeout: float = 10) -> tuple[str, Message]:
    """The next OMEMO message from `sender` that carries a payload, decrypted: (plaintext, the
    stanza as received). Empty OMEMO messages (python-omemo sends them to complete a key
    exchange) are decrypted too, and skipped."""
    async def wait():
        while True:
            msg = await c.inbox.get()
            if msg["from"].bare != sender or not c.plugin["xep_0384"].is_encrypted(msg):
                continue
            decrypted, device = await c.plugin["xep_0384"].decrypt_message(msg)
            assert device.bare_jid == sender
            if decrypted["body"]:
                return decrypted["body"], msg
    try:
        return await asyncio.wait_for(wait(), timeout)
    except TimeoutError:
        raise AssertionError(f"{c.boundjid}: no encrypted message from {sender} "
                             f"within {timeout}s") from None


def assert_no_plaintext(c: Client, texts: list[str]):
    """Nothing that `c` sent or received, on the wire, holds one of `texts`."""
    for direction, stanzas in (("received", c.wire_in), ("sent", c.wire_out)):
        for s in stanzas:
            xml = str(s)
            for t in texts:
                assert t not in xml, f"{c.boundjid} {direction} the plaintext {t!r}: {xml}"


def assert_omemo_wire(msg: Message, fallback: str):
    """A received OMEMO message as weft delivered it: the <encrypted/> element with a header
    and a payload, and no body but the plugin's fallback text."""
    enc = msg.xml.find(f"{{{NS_OLDMEMO}}}encrypted")
    assert enc is not None, f"no OMEMO <encrypted/>: {msg}"
    assert enc.find(f"{{{NS_OLDMEMO}}}header") is not None, f"no OMEMO header: {msg}"
    assert enc.find(f"{{{NS_OLDMEMO}}}payload") is not None, f"no OMEMO payload: {msg}"
    assert msg["body"] == fallback, f"a body other than the fallback: {msg}"


@run
async def test_omemo_session_through_weft_started_while_the_peer_is_offline():
    ana_jid, ben_jid = jid_of("omemo-ana"), jid_of("omemo-ben")
    ana_store, ben_store = MemoryStorage(), MemoryStorage()
    clients = []
    try:
        ben = await omemo_client("omemo-ben", ben_store)
        clients.append(ben)
        ana = await omemo_client("omemo-ana", ana_store)
        clients.append(ana)
        ben_device, ana_device = await own_device_id(ben), await own_device_id(ana)
        fallback = ana.plugin["xep_0384"].fallback_message
        for c in (ana, ben):
            info = await c.plugin["xep_0030"].get_info(jid=c.boundjid, local=True)
            features = info.get_features()
            for node in DEVICE_LIST_NODES:
                assert f"{node}+notify" in features, f"{c.boundjid} does not ask for {node}"

        # Mutual contacts (each client approves and subscribes back by itself), so the
        # presence access model admits each to the other's device lists, which come as PEP
        # notifications: no one fetches them by hand.
        ana.client_roster[ben_jid].subscribe()

        def mutual():
            return (ben_jid in ana.client_roster and ana_jid in ben.client_roster
                    and ana.client_roster[ben_jid]["subscription"] == "both"
                    and ben.client_roster[ana_jid]["subscription"] == "both")
        await until(mutual, "a mutual presence subscription")
        await until(lambda: _has(ana, ben_jid, ben_device),
                    f"Ana learns Ben's device {ben_device} through PEP")
        await until(lambda: _has(ben, ana_jid, ana_device),
                    f"Ben learns Ana's device {ana_device} through PEP")

        # Ben goes offline; Ana starts the conversation now: she builds the session from his
        # bundle (fetched from weft by item id / from his bundle node) and weft keeps the
        # key-exchange message for Ben.
        await ben.stop()
        clients.remove(ben)
        await until(lambda: not ana.client_roster[ben_jid].resources, "Ana sees Ben offline")
        texts = ["Ana to Ben, while he is away: the key is under the mat"]
        await send_encrypted(ana, ben_jid, texts[0])
        await ana.sync()

        # Ben comes back as the same device and reads it from offline storage.
        ben = await omemo_client("omemo-ben", ben_store)
        clients.append(ben)
        assert await own_device_id(ben) == ben_device, "the same OMEMO device logged in again"
        text, raw = await next_plaintext(ben, ana_jid)
        assert text == texts[0]
        assert_omemo_wire(raw, fallback)
        assert raw.xml.find("{urn:xmpp:delay}delay") is not None, f"not from offline storage: {raw}"

        # And answers; then a few more both ways.
        texts.append("Ben to Ana: found it, thanks (ünïcödé ✓)")
        await send_encrypted(ben, ana_jid, texts[-1])
        text, raw = await next_plaintext(ana, ben_jid)
        assert text == texts[-1]
        assert_omemo_wire(raw, fallback)
        for i in range(3):
            for sender, receiver, to, frm in ((ana, ben, ben_jid, ana_jid),
                                              (ben, ana, ana_jid, ben_jid)):
                texts.append(f"round {i} from {sender.boundjid.user}: {i * 7919}")
                await send_encrypted(sender, to, texts[-1])
                text, raw = await next_plaintext(receiver, frm)
                assert text == texts[-1]
                assert_omemo_wire(raw, fallback)

        for c in (ana, ben):
            assert_no_plaintext(c, texts)

        # Ben's archive holds the conversation as it went over the wire: encrypted.
        archived = [m["mam_result"]["forwarded"]["stanza"]
                    async for m in ben.plugin["xep_0313"].iterate(with_jid=JID(ana_jid))]
        with_payload = [s for s in archived
                        if s.xml.find(f"{{{NS_OLDMEMO}}}encrypted/{{{NS_OLDMEMO}}}payload")
                        is not None]
        assert len(with_payload) == len(texts), \
            f"{len(with_payload)} archived OMEMO messages with a payload, {len(texts)} sent: " \
            + "\n".join(str(s) for s in archived)
        assert_no_plaintext(ben, texts)  # the MAM results are on Ben's wire record too
    finally:
        await asyncio.gather(*(c.stop() for c in clients))


async def _has(c: Client, bare: str, device: int) -> bool:
    return device in await device_ids(c, bare)


async def _value(value):
    return await value if inspect.isawaitable(value) else value

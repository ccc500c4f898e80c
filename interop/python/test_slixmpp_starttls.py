"""slixmpp (Python, MIT) against weft over RFC 6120 TCP with STARTTLS: SCRAM-SHA-256 and
SCRAM-SHA-1 asserted from the <auth/> slixmpp sent, the server signature verified, bind,
messages both ways; SCRAM-*-PLUS as far as Python's ssl module allows; certificate checks on.

Neither node client covers this: xmpp.js has no SCRAM-SHA-256, Strophe.js has no TCP."""
import asyncio
import functools
import logging
import ssl
import uuid

from slixclient import Client
from weft_env import DOMAIN, jid_of


def run(coro_fn):
    """Runs an async test on a fresh event loop, bounded so a missing reply fails, not hangs."""
    @functools.wraps(coro_fn)
    def wrapper(*args, **kwargs):
        asyncio.run(asyncio.wait_for(coro_fn(*args, **kwargs), 60))
    return wrapper


async def stop_all(*clients):
    await asyncio.gather(*(c.stop() for c in clients))


def assert_tls_verified(c: Client):
    """The stream was upgraded with STARTTLS and weft's certificate was verified."""
    assert "starttls" in c.features, "slixmpp did not negotiate STARTTLS"
    assert isinstance(c.socket, (ssl.SSLObject, ssl.SSLSocket)), f"not TLS: {c.socket!r}"
    assert c.ssl_context.verify_mode == ssl.CERT_REQUIRED and c.ssl_context.check_hostname
    # Python returns the peer certificate's fields only once it has been validated.
    assert ("DNS", DOMAIN) in c.socket.getpeercert().get("subjectAltName", ())


def assert_scram(c: Client, mechanism: str, tried_before=()):
    """`mechanism` succeeded, after failed attempts with `tried_before` in the same stream."""
    assert c.sent_auth == [*tried_before, mechanism], f"<auth/> mechanisms sent: {c.sent_auth}"
    mech = c.plugin["feature_mechanisms"].mech
    assert mech.name == mechanism
    # slixmpp sets this only after checking the server signature (v=) in weft's <success/>;
    # a wrong one makes it drop the stream instead (RFC 5802 §5, mutual authentication).
    assert mech._mutual_auth is True, "server signature not verified"


async def send_and_check(a: Client, b: Client, to: str):
    """a sends a chat message to `to` (one of b's JIDs); b gets it with weft's 'from' stamp."""
    body = f"hello {uuid.uuid4()}"
    a.send_message(mto=to, mbody=body, mtype="chat")
    msg = await b.next_message(body)
    assert str(msg["from"]) == a.boundjid.full  # RFC 6120 §8.1.2.1: the sender's full JID
    assert str(msg["to"]) == to
    assert msg["type"] == "chat"


@run
async def test_scram_sha_256_and_sha_1_over_starttls_exchange_messages():
    peggy = Client("py-peggy", sasl_mech="SCRAM-SHA-256", resource="slix")
    quentin = Client("py-quentin", sasl_mech="SCRAM-SHA-1")
    try:
        await peggy.start()
        await quentin.start()
        for c, mechanism in ((peggy, "SCRAM-SHA-256"), (quentin, "SCRAM-SHA-1")):
            assert_tls_verified(c)
            assert {"SCRAM-SHA-1", "SCRAM-SHA-256"} <= c.plugin["feature_mechanisms"].mech_list
            assert_scram(c, mechanism)
        assert peggy.boundjid.full == jid_of("py-peggy") + "/slix"  # the resource we asked for
        assert quentin.boundjid.bare == jid_of("py-quentin") and quentin.boundjid.resource

        await peggy.go_online()
        await quentin.go_online()
        # SHA-256 → SHA-1 client at the bare JID, then back at the full JID.
        await send_and_check(peggy, quentin, quentin.boundjid.bare)
        await send_and_check(quentin, peggy, peggy.boundjid.full)
    finally:
        await stop_all(peggy, quentin)


@run
async def test_unforced_choice_over_tls_is_scram_sha_256_plus_or_the_documented_fallback(caplog):
    """Left to choose, slixmpp prefers SCRAM-SHA-256-PLUS when weft offers it. On TLS 1.3 it
    needs tls-exporter (RFC 9266), which Python's ssl module only gets in some future version
    (cpython issue 95341); weft offers no tls-unique (undefined for TLS 1.3). So where Python
    lacks it, slixmpp must cancel -PLUS, say why, and fall back to plain SCRAM-SHA-256."""
    caplog.set_level(logging.INFO, logger="slixmpp.util.sasl.client")
    rupert = Client("py-rupert")
    try:
        await rupert.start()
        assert_tls_verified(rupert)
        offered = rupert.plugin["feature_mechanisms"].mech_list
        assert "SCRAM-SHA-256-PLUS" in offered, f"weft offered {sorted(offered)} over TLS"
        assert rupert.socket.version() == "TLSv1.3"
        if "tls-exporter" in ssl.CHANNEL_BINDING_TYPES:  # a Python that has it: the real thing
            assert_scram(rupert, "SCRAM-SHA-256-PLUS")
            assert rupert.sent_gs2 == [b"p=tls-exporter,"]
        else:
            assert_scram(rupert, "SCRAM-SHA-256")
            assert rupert.sent_gs2 == [b"n,"]  # no binding, though the server could
            assert "SASL: SCRAM-SHA-256-PLUS: SCRAM-PLUS requires channel binding" in caplog.text
    finally:
        await stop_all(rupert)


@run
async def test_certificate_checks_are_on():
    """Without weft's certificate in its trust store, slixmpp must refuse the STARTTLS handshake
    (so the tests above trust it because we said so, not because checks are off)."""
    sybil = Client("py-peggy", trust_weft=False)
    try:
        name, data = await sybil.connect_until(("session_start", "ssl_invalid_chain"), 15)
        assert name == "ssl_invalid_chain", f"expected a certificate failure, got {name}"
        assert "CERTIFICATE_VERIFY_FAILED" in str(data)
        assert sybil.sent_auth == [], "sent <auth/> over an unverified connection"
    finally:
        await stop_all(sybil)


@run
async def test_scram_plus_with_tls_unique_on_tls_1_2_is_refused_then_scram_sha_256_succeeds():
    """On TLS 1.2 Python can do tls-unique, so slixmpp does try SCRAM-SHA-256-PLUS (p=tls-unique)
    and then SCRAM-SHA-1-PLUS. weft implements tls-exporter and tls-server-end-point only (and
    says so with XEP-0440), so it must refuse both with a SASL <failure/> and let the client
    retry in the same stream (RFC 6120 §6.4.5), where SCRAM-SHA-256 then succeeds."""
    rupert = Client("py-rupert")
    rupert.ssl_context.maximum_version = ssl.TLSVersion.TLSv1_2
    try:
        await rupert.start()
        assert rupert.socket.version() == "TLSv1.2"
        assert_scram(rupert, "SCRAM-SHA-256", tried_before=["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"])
        # "n": the client does not bind, knowing the server could (RFC 5802 §6).
        assert rupert.sent_gs2 == [b"p=tls-unique,", b"p=tls-unique,", b"n,"]
        assert len(rupert.sasl_failures) == 2, rupert.sasl_failures
    finally:
        await stop_all(rupert)

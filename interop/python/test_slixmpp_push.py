"""slixmpp against weft's XEP-0357 push notifications, with the app server written here: a
second slixmpp client (push-app@localhost/app) that takes the pubsub publishes and answers
them. slixmpp 1.17 has no XEP-0357 plugin, so the <enable/> is built by hand; stream
management is slixmpp's own xep_0198 plugin.

The acceptance point: a client enables push, its connection is lost (the session hibernates,
waiting to be resumed), a message arrives, and the app server receives the notification (a
summary with the count and the sender, no body by default, from the account's bare JID). After
resuming, the client has the message and no further notification follows. Accounts are the
test's own (push-* in run.sh's USERS)."""
import asyncio
import copy

from slixmpp.xmlstream import ET
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from slixclient import Client
from test_slixmpp_sm import SmClient, run, until
from weft_env import jid_of

NS_PUSH = "urn:xmpp:push:0"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_DATA = "jabber:x:data"


def summary(iq) -> dict[str, str]:
    """The fields of a notification's summary form."""
    form = iq.xml.find(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}publish/{{{NS_PUBSUB}}}item/"
                       f"{{{NS_PUSH}}}notification/{{{NS_DATA}}}x")
    assert form is not None, str(iq)
    return {f.get("var"): (f.findtext(f"{{{NS_DATA}}}value") or "")
            for f in form.findall(f"{{{NS_DATA}}}field")}


@run
async def test_the_app_server_receives_a_notification_for_a_hibernated_session():
    amy = SmClient("push-amy", "phone")
    app = Client("push-app", resource="app")
    ben = Client("push-ben", resource="desk")
    notifications = []

    def on_publish(iq):
        notifications.append(copy.copy(iq))
        iq.reply(clear=True).send()

    app.register_handler(Callback(
        "push publish", MatchXPath(f"{{jabber:client}}iq/{{{NS_PUBSUB}}}pubsub"), on_publish))
    try:
        await app.start()
        app_jid = app.boundjid.full
        await amy.start()
        await until(lambda: "sm_enabled" in amy.sm_events, "slixmpp's sm_enabled")
        amy_jid = amy.boundjid.full
        await amy.go_online()
        enable = amy.Iq(stype="set")
        enable.append(ET.Element(f"{{{NS_PUSH}}}enable", jid=app_jid, node="amy-node"))
        result = await enable.send(timeout=5)
        assert result["type"] == "result", str(result)
        await ben.start()

        # Lost without </stream:stream>: the session waits to be resumed.
        amy.abort()
        await asyncio.sleep(0.3)
        ben.send_message(mto=amy_jid, mbody="wake up", mtype="chat")
        await until(lambda: notifications, "the app server's notification")
        n = notifications[0]
        assert n["from"].full == jid_of("push-amy"), str(n)
        assert n.xml.find(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}publish").get("node") == "amy-node"
        fields = summary(n)
        assert fields["FORM_TYPE"] == "urn:xmpp:push:summary", fields
        assert fields["message-count"] == "1", fields
        assert fields["last-message-sender"] == ben.boundjid.full, fields
        assert "last-message-body" not in fields, "no body unless configured"

        name, _ = await amy.connect_until(("session_resumed", "session_start", "sm_failed",
                                           "failed_all_auth", "connection_failed"), 15)
        assert name == "session_resumed", f"slixmpp resumed, got {name}: {amy.sm_events}"
        await until(lambda: "wake up" in amy.bodies, "the message after resuming")
        ben.send_message(mto=amy_jid, mbody="live now", mtype="chat")
        await until(lambda: "live now" in amy.bodies, "a message to the resumed session")
        await asyncio.sleep(1)
        assert len(notifications) == 1, [str(x) for x in notifications]
    finally:
        await asyncio.gather(amy.stop(), app.stop(), ben.stop())

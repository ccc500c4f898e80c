"""slixmpp (Python, MIT) against weft's XEP-0313 message archive over TCP with STARTTLS:
1,000 messages go from one account to another, then the recipient pages through its archive
with slixmpp's own xep_0313 plugin (RSM paging through xep_0059), forwards and backwards, and
must get exactly those messages, in order, each under the stanza-id it was delivered with,
with the last page of each direction marked complete. Accounts are the test's own (mam-* in
run.sh's USERS)."""
import asyncio
import functools

from slixclient import Client
from weft_env import jid_of

N = 1000
NS_SID = "urn:xmpp:sid:0"
NS_MAM = "urn:xmpp:mam:2"


def run(coro_fn):
    """Runs an async test on a fresh event loop, bounded so a missing reply fails, not hangs."""
    @functools.wraps(coro_fn)
    def wrapper(*args, **kwargs):
        asyncio.run(asyncio.wait_for(coro_fn(*args, **kwargs), 120))
    return wrapper


def fins(client: Client, since: int) -> list[str]:
    """The 'complete' attribute of each MAM <fin/> received after `since`, in order."""
    out = []
    for s in client.received(lambda s: s.name == "iq", since):
        fin = s.xml.find(f"{{{NS_MAM}}}fin")
        if fin is not None:
            out.append(fin.get("complete", "false"))
    return out


@run
async def test_a_thousand_messages_page_back_exactly_both_ways():
    ana = Client("mam-ana", resource="phone")
    ben = Client("mam-ben", resource="desk")
    ben.register_plugin("xep_0059")
    ben.register_plugin("xep_0313")
    try:
        await ana.start()
        await ben.start()
        await ana.go_online()
        await ben.go_online()
        bodies = [f"m{i:04}" for i in range(N)]
        for body in bodies:
            ana.send_message(mto=ben.boundjid.full, mbody=body, mtype="chat")
        # Each delivered copy carries the stanza-id weft gave it in Ben's archive.
        delivered_ids = []
        while len(delivered_ids) < N:
            msg = await asyncio.wait_for(ben.inbox.get(), 20)
            sid = msg.xml.find(f"{{{NS_SID}}}stanza-id")
            assert sid is not None and sid.get("by") == jid_of("mam-ben"), str(msg)
            assert msg["body"] == bodies[len(delivered_ids)], "delivered in order"
            delivered_ids.append(sid.get("id"))

        mam = ben.plugin["xep_0313"]
        since = ben.mark()
        forward = [m async for m in mam.iterate(with_jid=ana.boundjid.bare, rsm={"max": 100})]
        got = [m["mam_result"]["forwarded"]["stanza"]["body"] for m in forward]
        assert got == bodies, f"forward: {len(got)} messages, first differences at " \
            f"{next((i for i, (a, b) in enumerate(zip(got, bodies)) if a != b), len(got))}"
        assert [m["mam_result"]["id"] for m in forward] == delivered_ids
        assert fins(ben, since)[-1] == "true", f"the last forward page is complete: {fins(ben, since)}"

        since = ben.mark()
        backward = [m async for m in mam.iterate(with_jid=ana.boundjid.bare, reverse=True,
                                                rsm={"max": 100})]
        got_back = [m["mam_result"]["forwarded"]["stanza"]["body"] for m in backward]
        assert got_back == list(reversed(bodies)), f"backward: {len(got_back)} messages"
        assert fins(ben, since)[-1] == "true", f"the first page is complete: {fins(ben, since)}"
    finally:
        for c in (ana, ben):
            c.disconnect()

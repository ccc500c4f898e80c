"""Multi-user chat (XEP-0045) driven by slixmpp's xep_0045 plugin (Python, MIT), a client we
did not write: creating and configuring a room, history on entering, the subject,
affiliations and their lists, private messages, kicks and bans, mediated invitations, and
destroying the room; registering with a room through slixmpp's xep_0077 (the muc#register
form, the reserved nick on disco#info node x-roomuser-item, a nick reserved by an admin on the
member list), the presence-broadcast filter and member-list access set through the
configuration form. Each step checks what slixmpp saw, not what weft meant to send."""
import asyncio
import functools
import uuid

from slixmpp import JID
from slixmpp.exceptions import IqError, PresenceError

from slixclient import Client
from weft_env import DOMAIN, jid_of

SERVICE = f"conference.{DOMAIN}"
USER_NS = "{http://jabber.org/protocol/muc#user}"


def run(coro_fn):
    """Runs an async test on a fresh event loop, bounded so a missing reply fails, not hangs."""
    @functools.wraps(coro_fn)
    def wrapper(*args, **kwargs):
        asyncio.run(asyncio.wait_for(coro_fn(*args, **kwargs), 90))
    return wrapper


def client(user: str) -> Client:
    c = Client(user, resource=f"muc-{uuid.uuid4().hex[:6]}")
    c.register_plugin("xep_0030")
    c.register_plugin("xep_0004")
    c.register_plugin("xep_0045")
    c.register_plugin("xep_0077")
    return c


def status_codes(presence) -> set:
    x = presence.xml.find(f"{USER_NS}x")
    return set() if x is None else {s.get("code") for s in x.findall(f"{USER_NS}status")}


async def started(*users):
    clients = [client(u) for u in users]
    for c in clients:
        await c.start()
        await c.go_online()
    return clients


@run
async def test_create_configure_talk_moderate_invite_destroy():
    alice, bob, carol = await started("muc-ana", "muc-ben", "muc-cyd")
    muc = {c: c.plugin["xep_0045"] for c in (alice, bob, carol)}
    room = JID(f"slix-{uuid.uuid4().hex[:8]}@{SERVICE}")
    try:
        # Creation: the room is new (201) and alice owns it.
        own, _subject, _occupants, _history = await muc[alice].join_muc_wait(room, "Alice", timeout=10)
        assert {"110", "201"} <= status_codes(own), own
        assert own["muc"]["affiliation"] == "owner", own
        # Configuration through the form slixmpp fetched (a locked room opens with it).
        form = await muc[alice].get_room_config(room, timeout=10)
        fields = form.get_fields()
        assert "muc#roomconfig_roomname" in fields and "muc#roomconfig_moderatedroom" in fields
        form.set_values({"muc#roomconfig_roomname": "Slix room", "muc#roomconfig_whois": "anyone"})
        await muc[alice].set_room_config(room, form, timeout=10)

        # History: three messages before bob enters, and the subject.
        muc[alice].set_subject(room, "Potions")
        for i in range(3):
            alice.send_message(mto=room, mbody=f"before {i}", mtype="groupchat")
        await alice.expect(lambda s: s.name == "message" and s["body"] == "before 2", "the reflection")
        own, subject, occupants, history = await muc[bob].join_muc_wait(room, "Bob", maxstanzas=10, timeout=10)
        assert [m["body"] for m in history] == ["before 0", "before 1", "before 2"], history
        assert subject["subject"] == "Potions", subject
        # slixmpp lists every occupant that came online while entering, itself last.
        assert [p["from"].resource for p in occupants] == ["Alice", "Bob"], occupants
        assert "100" in status_codes(own), "non-anonymous now: " + str(own)
        assert own["muc"]["jid"] == bob.boundjid, own

        # Talk, and a private message.
        mark = alice.mark()
        bob.send_message(mto=room, mbody="hello coven", mtype="groupchat")
        m = await alice.expect(lambda s: s.name == "message" and s["body"] == "hello coven", "bob's message", mark)
        assert m["from"] == JID(f"{room}/Bob") and m["type"] == "groupchat", m
        bob.send_message(mto=JID(f"{room}/Alice"), mbody="just you", mtype="chat")
        pm = await alice.expect(lambda s: s.name == "message" and s["body"] == "just you", "the PM", mark)
        assert pm["from"] == JID(f"{room}/Bob"), pm

        # Affiliations and their lists.
        await muc[alice].set_affiliation(room, "member", jid=bob.boundjid.bare, timeout=10)
        members = await muc[alice].get_affiliation_list(room, "member", timeout=10)
        assert [JID(j).bare for j in members] == [bob.boundjid.bare], members
        try:
            await muc[bob].set_affiliation(room, "admin", jid=bob.boundjid.bare, timeout=10)
            raise AssertionError("a member made himself admin")
        except IqError as e:
            assert e.condition == "forbidden", e

        # An invitation to carol, mediated by the room.
        mark_c = carol.mark()
        muc[alice].invite(room, carol.boundjid.bare, reason="join us")
        inv = await carol.expect(lambda s: s.name == "message" and s.xml.find(f"{USER_NS}x/{USER_NS}invite") is not None,
                                 "the invitation", mark_c)
        assert inv["from"] == room, inv
        assert inv.xml.find(f"{USER_NS}x/{USER_NS}invite").get("from") == alice.boundjid.bare, inv

        # A kick (307), then a ban keeps bob out.
        mark_b = bob.mark()
        await muc[alice].set_role(room, "Bob", "none", reason="enough", timeout=10)
        out = await bob.expect(lambda s: s.name == "presence" and s["type"] == "unavailable", "the kick", mark_b)
        assert {"110", "307"} <= status_codes(out), out
        # §8.2: the reason (and the moderator) in the item.
        item = out.xml.find(f"{USER_NS}x/{USER_NS}item")
        assert item is not None and item.findtext(f"{USER_NS}reason") == "enough", out
        assert item.find(f"{USER_NS}actor") is not None, out
        await muc[alice].set_affiliation(room, "outcast", jid=bob.boundjid.bare, timeout=10)
        try:
            await muc[bob].join_muc_wait(room, "Bob", timeout=10)
            raise AssertionError("a banned user entered")
        except PresenceError as e:
            assert e.condition == "forbidden", e

        # Destroying: carol (now inside) hears it, and the room is gone.
        await muc[carol].join_muc_wait(room, "Carol", timeout=10)
        mark_c = carol.mark()
        await muc[alice].destroy(room, reason="done", timeout=10)
        gone = await carol.expect(lambda s: s.name == "presence" and s["type"] == "unavailable", "the end", mark_c)
        assert gone.xml.find(f"{USER_NS}x/{USER_NS}destroy") is not None, gone
        try:
            await muc[alice].get_room_config(room, timeout=10)
            raise AssertionError("the destroyed room answered")
        except IqError as e:
            assert e.condition == "item-not-found", e
    finally:
        for c in (alice, bob, carol):
            c.disconnect()


@run
async def test_registered_nicks_presence_filter_and_member_list():
    alice, bob, carol = await started("muc-ana", "muc-ben", "muc-cyd")
    muc = {c: c.plugin["xep_0045"] for c in (alice, bob, carol)}
    room = JID(f"slix-{uuid.uuid4().hex[:8]}@{SERVICE}")
    try:
        await muc[alice].join_muc_wait(room, "Alice", timeout=10)
        # Only moderators' presence is broadcast; participants may get the member list.
        form = await muc[alice].get_room_config(room, timeout=10)
        fields = form.get_fields()
        assert fields["muc#roomconfig_presencebroadcast"]["type"] == "list-multi", fields
        assert set(fields["muc#roomconfig_presencebroadcast"].get_value()) == {
            "moderator", "participant", "visitor"}
        form.set_values({"muc#roomconfig_presencebroadcast": ["moderator"],
                         "muc#roomconfig_getmemberlist": ["moderator", "participant"]})
        await muc[alice].set_room_config(room, form, timeout=10)

        # Bob registers from outside the room: slixmpp's xep_0077 gets the muc#register
        # form, he submits it with his nick, and the room reserves it.
        reg = await bob.plugin["xep_0077"].get_registration(jid=room, timeout=10)
        rform = reg["register"]["form"]
        assert "muc#register_roomnick" in rform.get_fields(), reg
        iq = bob.Iq()
        iq["type"] = "set"
        iq["to"] = room
        answer = bob.plugin["xep_0004"].make_form(ftype="submit")
        answer.add_field(var="FORM_TYPE", ftype="hidden",
                         value="http://jabber.org/protocol/muc#register")
        answer.add_field(var="muc#register_roomnick", value="Bobby")
        iq["register"].append(answer)
        await iq.send(timeout=10)
        info = await bob.plugin["xep_0030"].get_info(jid=room, node="x-roomuser-item", timeout=10)
        names = [i[3] for i in info["disco_info"]["identities"] if i[0] == "conference"]
        assert names == ["Bobby"], info
        again = await bob.plugin["xep_0077"].get_registration(jid=room, timeout=10)
        assert again["register"]["registered"], again

        # Nobody else enters as Bobby.
        try:
            await muc[carol].join_muc_wait(room, "Bobby", timeout=10)
            raise AssertionError("carol took bob's reserved nick")
        except PresenceError as e:
            assert e.condition == "conflict", e
        # Carol, a participant, is shown to nobody but herself; she sees alice, a moderator.
        mark_a = alice.mark()
        own, _subject, occupants, _history = await muc[carol].join_muc_wait(room, "Carol", timeout=10)
        assert [p["from"].resource for p in occupants] == ["Alice", "Carol"], occupants
        await alice.plugin["xep_0199"].ping(jid=room, timeout=10)  # what the room sent her is in
        assert not alice.received(lambda s: s.name == "presence" and s["from"].resource == "Carol",
                                  mark_a), "carol's presence was broadcast"
        assert "Carol" not in muc[alice].get_roster(room)
        # She may get the member list: bob is on it with his reserved nick.
        members = await muc[carol].get_affiliation_list(room, "member", timeout=10)
        assert [JID(j).bare for j in members] == [bob.boundjid.bare], members
        # An admin reserves carol's nick on the member list (slixmpp's set_affiliation nick).
        await muc[alice].set_affiliation(room, "member", jid=carol.boundjid.bare, nick="Cee",
                                         timeout=10)
        info = await carol.plugin["xep_0030"].get_info(jid=room, node="x-roomuser-item", timeout=10)
        assert [i[3] for i in info["disco_info"]["identities"]] == ["Cee"], info

        # Bob unregisters: no reservation left, no membership either.
        await bob.plugin["xep_0077"].cancel_registration(jid=room, timeout=10)
        info = await bob.plugin["xep_0030"].get_info(jid=room, node="x-roomuser-item", timeout=10)
        assert list(info["disco_info"]["identities"]) == [], info
        members = await muc[alice].get_affiliation_list(room, "member", timeout=10)
        assert [JID(j).bare for j in members] == [carol.boundjid.bare], members
        await muc[alice].destroy(room, timeout=10)
    finally:
        for c in (alice, bob, carol):
            c.disconnect()

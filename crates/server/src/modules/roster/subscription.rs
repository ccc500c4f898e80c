//! RFC 6121 §3 and Appendix A: the presence subscription state machine of one roster item, as
//! plain functions. No I/O: callers apply the new state, route or deliver the stanza when told,
//! and push the roster when it changed.

use weft_storage::Subscription;

/// The four subscription stanzas (RFC 6121 §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubKind {
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
}

impl SubKind {
    pub fn parse(presence_type: &str) -> Option<SubKind> {
        Some(match presence_type {
            "subscribe" => SubKind::Subscribe,
            "subscribed" => SubKind::Subscribed,
            "unsubscribe" => SubKind::Unsubscribe,
            "unsubscribed" => SubKind::Unsubscribed,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SubKind::Subscribe => "subscribe",
            SubKind::Subscribed => "subscribed",
            SubKind::Unsubscribe => "unsubscribe",
            SubKind::Unsubscribed => "unsubscribed",
        }
    }
}

/// A roster item's subscription state (Appendix A.1): the subscription with its pending
/// flags, and a pre-approval (§3.4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct State {
    pub subscription: Subscription,
    /// "Pending Out": the user asked for the contact's presence.
    pub pending_out: bool,
    /// "Pending In": the contact asked for the user's presence.
    pub pending_in: bool,
    /// The user pre-approved a subscription request from the contact.
    pub approved: bool,
}

impl State {
    /// The user receives the contact's presence.
    pub fn to(self) -> bool {
        matches!(self.subscription, Subscription::To | Subscription::Both)
    }

    /// The contact receives the user's presence.
    pub fn from(self) -> bool {
        matches!(self.subscription, Subscription::From | Subscription::Both)
    }

    fn with(self, to: bool, from: bool) -> State {
        let subscription = match (to, from) {
            (false, false) => Subscription::None,
            (true, false) => Subscription::To,
            (false, true) => Subscription::From,
            (true, true) => Subscription::Both,
        };
        State {
            subscription,
            ..self
        }
    }

    /// No subscription, nothing pending, nothing approved: an item kept only for this state
    /// can go.
    pub fn is_blank(self) -> bool {
        self == State::default()
    }
}

/// What to do after a subscription stanza.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub state: State,
    /// Outbound: route the stanza to the contact. Inbound: deliver it to the user.
    pub forward: bool,
    /// Inbound only: answer the contact on the user's behalf (an auto-approved subscribe).
    pub reply: Option<SubKind>,
}

impl Outcome {
    fn same(state: State) -> Outcome {
        Outcome {
            state,
            forward: false,
            reply: None,
        }
    }

    fn forward(state: State) -> Outcome {
        Outcome {
            state,
            forward: true,
            reply: None,
        }
    }
}

/// The user sends `kind` to the contact (Appendix A.2, §3.1.2, §3.2.2, §3.3.2, §3.4).
pub fn outbound(s: State, kind: SubKind) -> Outcome {
    match kind {
        // A.2.1: always routed; the request is pending unless already subscribed.
        SubKind::Subscribe => Outcome::forward(if s.to() {
            s
        } else {
            State {
                pending_out: true,
                ..s
            }
        }),
        // A.2.2: cancels our subscription to the contact or our pending request.
        SubKind::Unsubscribe => {
            let next = State {
                pending_out: false,
                ..s.with(false, s.from())
            };
            if next == s {
                Outcome::same(s)
            } else {
                Outcome::forward(next)
            }
        }
        // A.2.3: approves a pending request; without one it is a pre-approval (§3.4),
        // kept and not routed.
        SubKind::Subscribed => {
            if s.pending_in {
                Outcome::forward(State {
                    pending_in: false,
                    approved: false,
                    ..s.with(s.to(), true)
                })
            } else if s.from() {
                Outcome::same(s)
            } else {
                Outcome::same(State {
                    approved: true,
                    ..s
                })
            }
        }
        // A.2.4: denies a pending request or cancels the contact's subscription; a
        // pre-approval is withdrawn without routing.
        SubKind::Unsubscribed => {
            if s.pending_in || s.from() {
                Outcome::forward(State {
                    pending_in: false,
                    approved: false,
                    ..s.with(s.to(), false)
                })
            } else {
                Outcome::same(State {
                    approved: false,
                    ..s
                })
            }
        }
    }
}

/// The contact sends `kind` to the user (Appendix A.3, §3.1.3, §3.2.3, §3.3.3, §3.1.6).
pub fn inbound(s: State, kind: SubKind) -> Outcome {
    match kind {
        // A.3.1: already subscribed or pre-approved: the server answers for the user;
        // otherwise the request waits for the user (delivered, kept pending).
        SubKind::Subscribe => {
            if s.from() {
                Outcome {
                    state: s,
                    forward: false,
                    reply: Some(SubKind::Subscribed),
                }
            } else if s.approved {
                Outcome {
                    state: State {
                        approved: false,
                        pending_in: false,
                        ..s.with(s.to(), true)
                    },
                    forward: false,
                    reply: Some(SubKind::Subscribed),
                }
            } else {
                Outcome::forward(State {
                    pending_in: true,
                    ..s
                })
            }
        }
        // A.3.2: the contact no longer wants our presence, or withdraws its request.
        SubKind::Unsubscribe => {
            if s.pending_in || s.from() || s.approved {
                Outcome::forward(State {
                    pending_in: false,
                    approved: false,
                    ..s.with(s.to(), false)
                })
            } else {
                Outcome::same(s)
            }
        }
        // A.3.3: only an answer to our pending request counts.
        SubKind::Subscribed => {
            if s.pending_out {
                Outcome::forward(State {
                    pending_out: false,
                    ..s.with(true, s.from())
                })
            } else {
                Outcome::same(s)
            }
        }
        // A.3.4: our request is denied or our subscription cancelled.
        SubKind::Unsubscribed => {
            if s.pending_out || s.to() {
                Outcome::forward(State {
                    pending_out: false,
                    ..s.with(false, s.from())
                })
            } else {
                Outcome::same(s)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use Subscription::{Both, From, None as No, To};

    fn st(subscription: Subscription, pending_out: bool, pending_in: bool) -> State {
        State {
            subscription,
            pending_out,
            pending_in,
            approved: false,
        }
    }

    /// The nine states of Appendix A.1 (pending flags only where the RFC allows them).
    fn states() -> Vec<State> {
        vec![
            st(No, false, false),
            st(No, true, false),
            st(No, false, true),
            st(No, true, true),
            st(To, false, false),
            st(To, false, true),
            st(From, false, false),
            st(From, true, false),
            st(Both, false, false),
        ]
    }

    /// Appendix A.2 and A.3 as the RFC tabulates them: (state, new state, routed/delivered).
    /// Rows whose effect is "no state change" and not routed are those not listed.
    #[test]
    fn appendix_a_tables() {
        use SubKind::*;
        type Row = (State, State, bool);
        let tables: [(bool, SubKind, Vec<Row>); 8] = [
            // A.2.1 outbound subscribe
            (
                true,
                Subscribe,
                vec![
                    (st(No, false, false), st(No, true, false), true),
                    (st(No, true, false), st(No, true, false), true),
                    (st(No, false, true), st(No, true, true), true),
                    (st(No, true, true), st(No, true, true), true),
                    (st(To, false, false), st(To, false, false), true),
                    (st(To, false, true), st(To, false, true), true),
                    (st(From, false, false), st(From, true, false), true),
                    (st(From, true, false), st(From, true, false), true),
                    (st(Both, false, false), st(Both, false, false), true),
                ],
            ),
            // A.2.2 outbound unsubscribe
            (
                true,
                Unsubscribe,
                vec![
                    (st(No, false, false), st(No, false, false), false),
                    (st(No, true, false), st(No, false, false), true),
                    (st(No, false, true), st(No, false, true), false),
                    (st(No, true, true), st(No, false, true), true),
                    (st(To, false, false), st(No, false, false), true),
                    (st(To, false, true), st(No, false, true), true),
                    (st(From, false, false), st(From, false, false), false),
                    (st(From, true, false), st(From, false, false), true),
                    (st(Both, false, false), st(From, false, false), true),
                ],
            ),
            // A.2.3 outbound subscribed (with a pending request: approval)
            (
                true,
                Subscribed,
                vec![
                    (st(No, false, true), st(From, false, false), true),
                    (st(No, true, true), st(From, true, false), true),
                    (st(To, false, true), st(Both, false, false), true),
                    (st(From, false, false), st(From, false, false), false),
                    (st(From, true, false), st(From, true, false), false),
                    (st(Both, false, false), st(Both, false, false), false),
                ],
            ),
            // A.2.4 outbound unsubscribed
            (
                true,
                Unsubscribed,
                vec![
                    (st(No, false, false), st(No, false, false), false),
                    (st(No, true, false), st(No, true, false), false),
                    (st(No, false, true), st(No, false, false), true),
                    (st(No, true, true), st(No, true, false), true),
                    (st(To, false, false), st(To, false, false), false),
                    (st(To, false, true), st(To, false, false), true),
                    (st(From, false, false), st(No, false, false), true),
                    (st(From, true, false), st(No, true, false), true),
                    (st(Both, false, false), st(To, false, false), true),
                ],
            ),
            // A.3.1 inbound subscribe (From/Both are answered by the server, checked below)
            (
                false,
                Subscribe,
                vec![
                    (st(No, false, false), st(No, false, true), true),
                    (st(No, true, false), st(No, true, true), true),
                    (st(No, false, true), st(No, false, true), true),
                    (st(No, true, true), st(No, true, true), true),
                    (st(To, false, false), st(To, false, true), true),
                    (st(To, false, true), st(To, false, true), true),
                    (st(From, false, false), st(From, false, false), false),
                    (st(From, true, false), st(From, true, false), false),
                    (st(Both, false, false), st(Both, false, false), false),
                ],
            ),
            // A.3.2 inbound unsubscribe
            (
                false,
                Unsubscribe,
                vec![
                    (st(No, false, false), st(No, false, false), false),
                    (st(No, true, false), st(No, true, false), false),
                    (st(No, false, true), st(No, false, false), true),
                    (st(No, true, true), st(No, true, false), true),
                    (st(To, false, false), st(To, false, false), false),
                    (st(To, false, true), st(To, false, false), true),
                    (st(From, false, false), st(No, false, false), true),
                    (st(From, true, false), st(No, true, false), true),
                    (st(Both, false, false), st(To, false, false), true),
                ],
            ),
            // A.3.3 inbound subscribed
            (
                false,
                Subscribed,
                vec![
                    (st(No, false, false), st(No, false, false), false),
                    (st(No, true, false), st(To, false, false), true),
                    (st(No, false, true), st(No, false, true), false),
                    (st(No, true, true), st(To, false, true), true),
                    (st(To, false, false), st(To, false, false), false),
                    (st(To, false, true), st(To, false, true), false),
                    (st(From, false, false), st(From, false, false), false),
                    (st(From, true, false), st(Both, false, false), true),
                    (st(Both, false, false), st(Both, false, false), false),
                ],
            ),
            // A.3.4 inbound unsubscribed
            (
                false,
                Unsubscribed,
                vec![
                    (st(No, false, false), st(No, false, false), false),
                    (st(No, true, false), st(No, false, false), true),
                    (st(No, false, true), st(No, false, true), false),
                    (st(No, true, true), st(No, false, true), true),
                    (st(To, false, false), st(No, false, false), true),
                    (st(To, false, true), st(No, false, true), true),
                    (st(From, false, false), st(From, false, false), false),
                    (st(From, true, false), st(From, false, false), true),
                    (st(Both, false, false), st(From, false, false), true),
                ],
            ),
        ];
        for (is_outbound, kind, rows) in tables {
            for (before, after, forwarded) in rows {
                let got = if is_outbound {
                    outbound(before, kind)
                } else {
                    inbound(before, kind)
                };
                let dir = if is_outbound { "outbound" } else { "inbound" };
                assert_eq!(got.state, after, "{dir} {kind:?} from {before:?}");
                assert_eq!(got.forward, forwarded, "{dir} {kind:?} from {before:?}");
            }
        }
        // A.3.1: a subscribe from a contact who already has the user's presence is answered
        // by the server.
        for s in [
            st(From, false, false),
            st(From, true, false),
            st(Both, false, false),
        ] {
            assert_eq!(inbound(s, Subscribe).reply, Some(Subscribed));
        }
    }

    /// §3.4 pre-approval: a `subscribed` without a pending request is remembered, not routed,
    /// and turns the contact's later request into an approved one without asking the user.
    #[test]
    fn pre_approval() {
        let s = outbound(State::default(), SubKind::Subscribed);
        assert!(!s.forward && s.state.approved);
        let r = inbound(s.state, SubKind::Subscribe);
        assert_eq!(r.reply, Some(SubKind::Subscribed));
        assert!(!r.forward);
        assert_eq!(r.state, st(From, false, false));
        // Withdrawn by unsubscribed.
        let w = outbound(s.state, SubKind::Unsubscribed);
        assert!(!w.forward && !w.state.approved);
    }

    /// Two accounts, each holding the other in its roster, send random subscription stanzas;
    /// every routed stanza arrives (in order) at the other side and auto-replies travel back.
    /// Once nothing is in flight, each side's view matches the other's: A receives B's
    /// presence exactly when B sends it to A, and a pending request on one side is pending on
    /// the other.
    #[test]
    fn two_parties_agree_after_any_sequence() {
        let kinds = [
            SubKind::Subscribe,
            SubKind::Subscribed,
            SubKind::Unsubscribe,
            SubKind::Unsubscribed,
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(6121);
        for _ in 0..20_000 {
            let mut side = [State::default(), State::default()];
            for _ in 0..rng.gen_range(1..12) {
                let who = rng.gen_range(0..2);
                let kind = kinds[rng.gen_range(0..4)];
                let out = outbound(side[who], kind);
                side[who] = out.state;
                if !out.forward {
                    continue;
                }
                // Deliver, then any automatic answer back, then its effect (an answer never
                // causes another answer).
                let peer = 1 - who;
                let inb = inbound(side[peer], kind);
                side[peer] = inb.state;
                if let Some(reply) = inb.reply {
                    side[who] = inbound(side[who], reply).state;
                }
            }
            let [a, b] = side;
            assert_eq!(a.to(), b.from(), "A {a:?} / B {b:?}");
            assert_eq!(a.from(), b.to(), "A {a:?} / B {b:?}");
            assert_eq!(a.pending_out, b.pending_in, "A {a:?} / B {b:?}");
            assert_eq!(a.pending_in, b.pending_out, "A {a:?} / B {b:?}");
            for s in [a, b] {
                assert!(
                    !(s.to() && s.pending_out),
                    "pending out while subscribed: {s:?}"
                );
                assert!(
                    !(s.from() && s.pending_in),
                    "pending in while subscribed: {s:?}"
                );
            }
        }
    }

    #[test]
    fn every_state_and_stanza_keeps_the_invariants() {
        for s in states() {
            for kind in [
                SubKind::Subscribe,
                SubKind::Subscribed,
                SubKind::Unsubscribe,
                SubKind::Unsubscribed,
            ] {
                for o in [outbound(s, kind), inbound(s, kind)] {
                    assert!(!(o.state.to() && o.state.pending_out), "{s:?} {kind:?}");
                    assert!(!(o.state.from() && o.state.pending_in), "{s:?} {kind:?}");
                }
            }
        }
    }
}

//! XEP-0198 Stream Management: the counters and the queue of unacknowledged stanzas of one
//! session. No I/O: the session task tells it what it sent and what the client acknowledged.

use std::collections::VecDeque;
use std::time::SystemTime;

use minidom::Element;

/// A stanza sent to the client and not yet acknowledged.
#[derive(Debug)]
pub struct Unacked {
    pub stanza: Box<Element>,
    /// When it was first sent: the XEP-0203 delay stamp if it ends up elsewhere (XEP-0198 §5).
    pub sent_at: SystemTime,
}

/// What an acknowledgement did.
#[derive(Debug, PartialEq, Eq)]
pub enum Acked {
    /// Up to 'h', as it should be.
    Counted,
    /// The client acknowledged more than it was sent (XEP-0198 §4 "handled-count-too-high"):
    /// taken as everything sent. XEP-0198 asks for a stream error here, but a client that
    /// counts a stanza it got just before `<enabled/>` (xmpp.js 0.14 does, when it sends
    /// presence as soon as it is bound) would lose its stream for it: like ejabberd, weft
    /// tolerates it and says so in its log.
    TooHigh { h: u32, send_count: u32 },
    /// An 'h' below the last one: nothing new (an older ack overtaken).
    Stale,
}

/// One session's stream management state, from `<enabled/>` on.
#[derive(Debug)]
pub struct StreamManagement {
    /// The SM-ID when the session may be resumed.
    pub id: Option<String>,
    /// Stanzas from the client handled, mod 2^32 (the 'h' we send).
    inbound: u32,
    /// Stanzas sent to the client, mod 2^32.
    sent: u32,
    /// Oldest first; its length is `sent - acked` (mod 2^32).
    unacked: VecDeque<Unacked>,
    max_unacked: usize,
    /// An `<r/>` of ours is not answered yet.
    pub ack_requested: bool,
}

impl StreamManagement {
    pub fn new(id: Option<String>, max_unacked: usize) -> StreamManagement {
        StreamManagement {
            id,
            inbound: 0,
            sent: 0,
            unacked: VecDeque::new(),
            max_unacked,
            ack_requested: false,
        }
    }

    /// The client's stanza was handled: routed, stored or answered.
    pub fn handled(&mut self) {
        // XEP-0198 §4: from 2^32 - 1 back to zero.
        self.inbound = self.inbound.wrapping_add(1);
    }

    pub fn inbound(&self) -> u32 {
        self.inbound
    }

    pub fn send_count(&self) -> u32 {
        self.sent
    }

    /// Records a stanza written to the client; false when more than the allowed number now
    /// wait for an acknowledgement (the stanza is kept all the same: nothing is dropped here).
    pub fn sent(&mut self, stanza: Box<Element>) -> bool {
        self.sent = self.sent.wrapping_add(1);
        self.unacked.push_back(Unacked {
            stanza,
            sent_at: SystemTime::now(),
        });
        self.unacked.len() <= self.max_unacked
    }

    /// The client handled every stanza up to `h`.
    pub fn ack(&mut self, h: u32) -> Acked {
        let acked = self.sent.wrapping_sub(self.unacked.len() as u32);
        let newly = h.wrapping_sub(acked);
        self.ack_requested = false;
        if newly > u32::MAX / 2 {
            // Behind the last ack, mod 2^32 (half the range either way tells the two apart).
            return Acked::Stale;
        }
        if newly as usize > self.unacked.len() {
            self.unacked.clear();
            return Acked::TooHigh {
                h,
                send_count: self.sent,
            };
        }
        self.unacked.drain(..newly as usize);
        Acked::Counted
    }

    pub fn unacked_len(&self) -> usize {
        self.unacked.len()
    }

    pub fn over_limit(&self) -> bool {
        self.unacked.len() > self.max_unacked
    }

    /// What a resumed stream sends again, oldest first (still unacknowledged until acked).
    pub fn unacked(&self) -> impl Iterator<Item = &Element> {
        self.unacked.iter().map(|u| &*u.stanza)
    }

    /// Everything unacknowledged, for the session's end.
    pub fn take_unacked(&mut self) -> VecDeque<Unacked> {
        std::mem::take(&mut self.unacked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stanza(n: u32) -> Box<Element> {
        Box::new(
            Element::builder("message", "jabber:client")
                .attr(rxml::xml_ncname!("id").into(), n.to_string())
                .build(),
        )
    }

    fn ids(sm: &StreamManagement) -> Vec<String> {
        sm.unacked()
            .map(|e| e.attr("id").unwrap().to_string())
            .collect()
    }

    #[test]
    fn acks_drop_exactly_the_handled_stanzas() {
        let mut sm = StreamManagement::new(None, 10);
        for n in 1..=5 {
            assert!(sm.sent(stanza(n)));
        }
        assert_eq!(sm.ack(2), Acked::Counted);
        assert_eq!(ids(&sm), ["3", "4", "5"]);
        // A repeated ack changes nothing, nor does an older one.
        assert_eq!(sm.ack(2), Acked::Counted);
        assert_eq!(sm.ack(1), Acked::Stale);
        assert_eq!(sm.unacked_len(), 3);
        sm.ack(5);
        assert_eq!(sm.unacked_len(), 0);
        sm.sent(stanza(6));
        // More than was sent: everything sent counts as handled.
        assert_eq!(
            sm.ack(8),
            Acked::TooHigh {
                h: 8,
                send_count: 6
            }
        );
        assert_eq!(sm.unacked_len(), 0);
    }

    #[test]
    fn counters_wrap_at_two_to_the_32() {
        let mut sm = StreamManagement::new(None, 10);
        sm.sent = u32::MAX - 1;
        sm.inbound = u32::MAX;
        sm.handled();
        assert_eq!(sm.inbound(), 0);
        for n in 0..4 {
            sm.sent(stanza(n));
        }
        assert_eq!(sm.send_count(), 2);
        // h = 2^32 - 1 acknowledges the first stanza, 0 the second, 2 all four.
        assert_eq!(sm.ack(u32::MAX), Acked::Counted);
        assert_eq!(ids(&sm), ["1", "2", "3"]);
        assert_eq!(sm.ack(0), Acked::Counted);
        assert_eq!(ids(&sm), ["2", "3"]);
        // Across the wrap, an ack from before it is stale.
        assert_eq!(sm.ack(u32::MAX - 1), Acked::Stale);
        assert_eq!(sm.ack(2), Acked::Counted);
        assert_eq!(sm.unacked_len(), 0);
        assert!(matches!(sm.ack(3), Acked::TooHigh { .. }));
    }

    #[test]
    fn the_bound_is_reported_but_nothing_is_dropped() {
        let mut sm = StreamManagement::new(None, 2);
        assert!(sm.sent(stanza(1)));
        assert!(sm.sent(stanza(2)));
        assert!(!sm.sent(stanza(3)));
        assert!(sm.over_limit());
        assert_eq!(sm.take_unacked().len(), 3);
    }

    #[test]
    fn an_ack_answers_our_request() {
        let mut sm = StreamManagement::new(None, 2);
        sm.ack_requested = true;
        sm.ack(0);
        assert!(!sm.ack_requested);
    }
}

//! RFC 6120 §4 throughput check: parses 100k copies of a typical chat message through `StreamParser` and prints stanzas/s (not run by `cargo test`).
//!
//! Run with `cargo run --release -p weft-xml --example parse_speed [count]`.

use std::time::Instant;

use weft_xml::{parse_message, write_element, Limits, StreamEvent, StreamParser};

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0' xml:lang='en'>";

const MESSAGE: &str =
    "<message to='juliet@capulet.example/balcony' from='romeo@montague.example/orchard' \
    type='chat' id='a8f3c1d2-7b1e-4f0a-9c3d-2e5f6a7b8c9d' xml:lang='en'>\
    <body>Art thou not Romeo, and a Montague? &lt;3</body>\
    <active xmlns='http://jabber.org/protocol/chatstates'/>\
    <request xmlns='urn:xmpp:receipts'/>\
    <origin-id xmlns='urn:xmpp:sid:0' id='de305d54-75b4-431b-adb2-eb6b9e546014'/>\
    </message>";

const DEFAULT_COUNT: usize = 100_000;
/// What a socket read typically hands us.
const READ: usize = 4096;

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("count must be a number"))
        .unwrap_or(DEFAULT_COUNT);
    let mut input = String::with_capacity(HEADER.len() + count * (MESSAGE.len() + 1));
    input.push_str(HEADER);
    for _ in 0..count {
        input.push_str(MESSAGE);
        input.push('\n');
    }

    for round in 1..=3 {
        let start = Instant::now();
        let mut parser = StreamParser::new(Limits::default());
        let mut stanzas = 0usize;
        for chunk in input.as_bytes().chunks(READ) {
            parser.feed(chunk).expect("valid input");
            while let Some(ev) = parser.next_event() {
                if let StreamEvent::Element(el) = ev {
                    stanzas += 1;
                    std::hint::black_box(el);
                }
            }
        }
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(stanzas, count);
        println!(
            "round {round}: StreamParser  {:>9.0} stanzas/s ({:.1} MB/s)",
            stanzas as f64 / secs,
            input.len() as f64 / secs / 1e6
        );
    }

    // The WebSocket path and serialisation, for comparison.
    let msg = format!(
        "<message xmlns='jabber:client'{}",
        &MESSAGE["<message".len()..]
    );
    let start = Instant::now();
    let mut out = Vec::with_capacity(1024);
    for _ in 0..count {
        let el = parse_message(&msg, Limits::default()).expect("valid message");
        out.clear();
        write_element(&el, &mut out);
        std::hint::black_box(&out);
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "parse_message + write_element {:>9.0} stanzas/s",
        count as f64 / secs
    );

    let el = parse_message(&msg, Limits::default()).expect("valid message");
    let start = Instant::now();
    for _ in 0..count {
        out.clear();
        write_element(&el, &mut out);
        std::hint::black_box(&out);
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "write_element alone           {:>9.0} stanzas/s",
        count as f64 / secs
    );
}

//! Stream negotiation decisions (RFC 6120 §4–§7, RFC 7395 §3.3–§3.9): which header is
//! acceptable and which features to offer at each step. No I/O: the session drives it.

pub mod c2s;

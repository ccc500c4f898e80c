//! SASL (RFC 4422) for XMPP (RFC 6120 §6): server-side mechanisms as sans-IO state machines.
//!
//! This crate owns the wire syntax and the cryptography of SCRAM-SHA-1, SCRAM-SHA-256 and their
//! `-PLUS` channel-binding variants (RFC 5802, RFC 7677, RFC 9266, RFC 5929), PLAIN (RFC 4616)
//! and EXTERNAL (RFC 4422 Appendix A). It never touches sockets or storage: the caller decodes
//! the base64 of `<auth/>`/`<response/>`, feeds the bytes in, looks up credentials itself and
//! maps a [`Failure`] onto the `<failure/>` element.
//!
//! The `sasl` crate on crates.io has unfinished server-side `-PLUS` support, so SCRAM is written
//! here on RustCrypto primitives.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod channel_binding;
mod client;
mod credentials;
mod error;
mod external;
mod failure;
mod hash;
mod mechanism;
mod plain;
mod scram;

pub use channel_binding::{ChannelBindingType, ChannelBindings};
pub use client::ScramClient;
pub use credentials::{ScramCredentials, DEFAULT_ITERATIONS, SALT_LEN};
pub use error::SaslError;
pub use external::parse_external;
pub use failure::Failure;
pub use hash::Hash;
pub use mechanism::Mechanism;
pub use plain::{parse_plain, PlainMessage};
pub use scram::{ClientFirst, ScramServer};

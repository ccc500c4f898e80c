//! Transports: listeners, TLS, the per-IP cap. They know bytes and sockets, not stanzas.

pub mod io;
pub mod limits;
pub mod shared;
pub mod tcp;
pub mod tls;
pub mod tls_check;

//! Sessions: one task per connection that owns its socket, and the registry that reaches them.

pub mod c2s;
pub(crate) mod rate;
pub mod registry;
pub mod resumption;
pub mod sm;
pub mod stop;

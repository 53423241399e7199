//! Hearing back (issue #15): the addresses replies and delivery reports come back to. The SMTP
//! receiver that accepts mail for them, and the filing of what it accepts, build on these.

pub mod addresses;

pub use addresses::{Addresses, Kind};

//! Hearing back (issue #15): the addresses replies, delivery reports and unsubscribe requests come
//! back to ([`addresses`]), the SMTP receiver that accepts mail for them ([`server`]), reading a
//! message ([`read`]) and filing it into the owner's history ([`inbox`]).

pub mod addresses;
pub mod inbox;
pub mod mailjet_parse;
pub mod read;
pub mod server;
mod settings;

pub use addresses::{Addresses, Kind};
pub use inbox::{Arrival, FileError, Filed, Inbox};
pub use server::{Receiver, ReceiverError};
pub use settings::{InboundSettings, TlsFiles};

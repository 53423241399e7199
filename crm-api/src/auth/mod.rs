//! Accounts: registration with email verification, login sessions, password reset and change,
//! API tokens, and the throttles that guard them. The JSON API and the HTML pages both call
//! these functions, so both follow the same rules.

pub mod password;
pub mod secrets;
mod service;
pub mod session_cache;
pub mod validate;

pub use service::*;

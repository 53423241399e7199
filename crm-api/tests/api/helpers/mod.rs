//! Test harness: each test gets its own PostgreSQL database and its own server on a random port
//! ([`app`]), and, where mail must really travel, its own SMTP server process ([`mail`]); where
//! files must really be stored, its own S3 server process ([`s3`]). Tests drive the server's
//! delivery engine and scheduler themselves instead of waiting for them.

mod app;
mod browser;
mod data;
mod mail;
mod process;
mod s3;
mod ws;

pub use app::*;
pub use browser::*;
pub use data::*;
pub use mail::*;
pub use process::*;
pub use s3::*;
pub use ws::*;

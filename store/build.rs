//! `sqlx::migrate!` embeds the migrations when this crate compiles; a migration added without
//! touching the crate's own sources would otherwise leave a cached build without it.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}

//! `sqlx::migrate!` embeds the migrations at compile time but cannot tell cargo to watch
//! their directories on stable Rust; without this, a new migration file would not be
//! picked up until something else changed.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}

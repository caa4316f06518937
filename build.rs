//! Rebuild when a migration is added: the SQL is embedded at compile time.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}

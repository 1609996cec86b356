//! Nagle bench (being written).
fn main() {}

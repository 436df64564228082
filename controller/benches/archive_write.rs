//! Archive write/restore benchmark (being written).
fn main() {}

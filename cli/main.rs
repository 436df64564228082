//! The `aps-controller` command. Thin glue: parse arguments, call the libraries, print.

fn main() {
    println!("aps-controller (being written)");
}

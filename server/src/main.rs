//! `cairn`: one member of a Cairn cluster.

fn main() {
    eprintln!("cairn: the server binary lands with the server issue");
    std::process::exit(2);
}

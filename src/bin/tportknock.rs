fn main() {
    std::process::exit(tportknockd::client::main());
}

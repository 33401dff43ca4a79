fn main() {
    std::process::exit(tportknockd::cli::main());
}

fn main() {
    std::process::exit(tportknockd::daemon::cli::main());
}

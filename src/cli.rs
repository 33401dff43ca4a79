//! Command line of `tportknockd` (stub until the daemon work lands).

pub fn main() -> i32 {
    eprintln!("tportknockd: not yet implemented");
    2
}

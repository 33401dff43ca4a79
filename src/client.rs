//! `tportknock`, the client (stub until issue 5 lands).

pub fn main() -> i32 {
    eprintln!("tportknock: not yet implemented");
    2
}

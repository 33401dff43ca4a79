//! The `tportknockd` command line: the original's options (`-c -C -i -r -l
//! -d -D -h`) plus `-p`, `-s`, `-m`, `-t`, `-j`, `-n`, `-N`, `-k`, `-q`,
//! `-S`, `-V`. Every option has a long name too; where knockd has one for
//! the same thing (`--config`, `--interface`, `--debug`, `--daemon`,
//! `--pidfile`) it is knockd's, so knockd's long spellings mean here what
//! they mean there.

use std::path::PathBuf;
use std::time::Duration;

use crate::daemon::exit;
use crate::daemon::options::{Options, DEFAULT_PIDFILE, DEFAULT_STATE_DIR};
use crate::doors::runner::RunnerConfig;
use crate::knock::matcher::DEFAULT_CAPACITY;
use crate::sys::caps;

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `-c FILE`: run the daemon.
    Run(Options),
    /// `-C FILE`: check a configuration and exit.
    Check(PathBuf),
    /// `-S`: show the running daemon's doors and counters (or the door
    /// journal when none runs).
    Status {
        /// `-p`: the daemon's pid file, beside which its status socket is.
        pidfile: PathBuf,
        /// `-s`: its state directory, for the journal.
        state_dir: PathBuf,
    },
    /// `-l`: list the interfaces and exit.
    List,
    /// `-h`.
    Help,
    /// `-V`.
    Version,
}

/// An option's description for getopts. Only the tests hand them over,
/// to check [`USAGE`] against getopts' layout; the daemon parses without
/// them, as `-h` prints `USAGE`, so their texts and formatting (about
/// 3.7 KB) are not in the binary twice.
macro_rules! desc {
    ($($t:tt)*) => {{
        #[cfg(test)]
        let text = format!($($t)*);
        #[cfg(not(test))]
        let text = {
            // Uses the arguments without formatting them.
            let _ = format_args!($($t)*);
            String::new()
        };
        text
    }};
}

fn opts() -> getopts::Options {
    let runner = RunnerConfig::default();
    let mut o = getopts::Options::new();
    o.optopt(
        "c",
        "config",
        &desc!("run with the knock sequences in FILE"),
        "FILE",
    );
    o.optopt(
        "C",
        "check",
        &desc!("check FILE, print its events and warnings, exit"),
        "FILE",
    );
    o.optflag(
        "S",
        "status",
        &desc!("show the running daemon's open doors, pending stops and counters"),
    );
    o.optopt(
        "i",
        "interface",
        &desc!("capture on IFACE (default: all interfaces)"),
        "IFACE",
    );
    o.optopt(
        "r",
        "refresh",
        &desc!("also re-read own addresses every SEC seconds"),
        "SEC",
    );
    o.optflag("l", "list", &desc!("list interfaces and exit"));
    o.optflag(
        "d",
        "debug",
        &desc!("debug: log every step, reset (with its frame) and timeout"),
    );
    o.optflag(
        "q",
        "quiet",
        &desc!("no 'step N of M' line for each knock step past the first"),
    );
    o.optflag(
        "D",
        "daemon",
        &desc!("run as a daemon (detach; log to syslog)"),
    );
    o.optopt(
        "p",
        "pidfile",
        &desc!("pid file (default {DEFAULT_PIDFILE})"),
        "FILE",
    );
    o.optopt(
        "s",
        "state-dir",
        &desc!("state directory for the door journal (default {DEFAULT_STATE_DIR})"),
        "DIR",
    );
    o.optopt(
        "m",
        "max-sources",
        &desc!("sources tracked at once (default {DEFAULT_CAPACITY})"),
        "N",
    );
    o.optopt(
        "t",
        "command-timeout",
        &desc!(
            "terminate a command still running after SEC seconds (default {})",
            runner.time_limit.as_secs()
        ),
        "SEC",
    );
    o.optopt(
        "j",
        "jobs",
        &desc!(
            "commands running at once (default {}; the rest queue)",
            runner.max_running
        ),
        "N",
    );
    o.optopt(
        "n",
        "max-doors",
        &desc!(
            "doors open at once; further knocks are logged and refused (default {})",
            crate::doors::DEFAULT_MAX_DOORS
        ),
        "N",
    );
    o.optopt(
        "N",
        "max-per-source",
        &desc!(
            "doors open at once for one source address (default {})",
            crate::doors::DEFAULT_MAX_PER_SOURCE
        ),
        "N",
    );
    o.optopt(
        "k",
        "keep-caps",
        &desc!(
            "capabilities commands keep when run as root: a list like \
         cap_net_admin,cap_net_raw (the default), none, or all"
        ),
        "CAPS",
    );
    o.optflag("V", "version", &desc!("print the version and exit"));
    o.optflag("h", "help", &desc!("print this help and exit"));
    o
}

/// `-h` without the note: what getopts' `usage` makes of [`opts`] and
/// the usage lines, written out so that the daemon does not carry
/// getopts' text layout and Unicode width tables (about 18 KiB); a test
/// keeps the two the same.
const USAGE: &str = "\
Usage: tportknockd -c FILE [-i IFACE] [-r SEC] [-d] [-D] [options]
       tportknockd -S [-p FILE] [-s DIR]
       tportknockd -C FILE | -l | -h | -V

Options:
    -c, --config FILE   run with the knock sequences in FILE
    -C, --check FILE    check FILE, print its events and warnings, exit
    -S, --status        show the running daemon's open doors, pending stops
                        and counters
    -i, --interface IFACE
                        capture on IFACE (default: all interfaces)
    -r, --refresh SEC   also re-read own addresses every SEC seconds
    -l, --list          list interfaces and exit
    -d, --debug         debug: log every step, reset (with its frame) and
                        timeout
    -q, --quiet         no 'step N of M' line for each knock step past the
                        first
    -D, --daemon        run as a daemon (detach; log to syslog)
    -p, --pidfile FILE  pid file (default /run/tportknockd.pid)
    -s, --state-dir DIR state directory for the door journal (default
                        /var/lib/tportknockd)
    -m, --max-sources N sources tracked at once (default 65536)
    -t, --command-timeout SEC
                        terminate a command still running after SEC seconds
                        (default 60)
    -j, --jobs N        commands running at once (default 16; the rest queue)
    -n, --max-doors N   doors open at once; further knocks are logged and
                        refused (default 4096)
    -N, --max-per-source N
                        doors open at once for one source address (default 32)
    -k, --keep-caps CAPS
                        capabilities commands keep when run as root: a list
                        like cap_net_admin,cap_net_raw (the default), none, or
                        all
    -V, --version       print the version and exit
    -h, --help          print this help and exit
";

/// `-h`.
pub fn usage() -> String {
    format!("{USAGE}{KNOCKD_NOTE}")
}

/// knockd's users type its letters: say where they mean something else.
const KNOCKD_NOTE: &str =
    "\nknockd users: here -d debugs and -D detaches, the other way round from\n\
                           knockd, but the long names --debug and --daemon mean what they mean\n\
                           there; -l lists interfaces (knockd's -l resolves names).\n";

fn number<T: std::str::FromStr + PartialOrd + Copy>(
    m: &getopts::Matches,
    opt: &str,
    min: T,
    max: T,
) -> Result<Option<T>, String> {
    match m.opt_str(opt) {
        None => Ok(None),
        Some(text) => match text.parse::<T>() {
            Ok(v) if v >= min && v <= max => Ok(Some(v)),
            _ => Err(format!(
                "-{opt}: expected a whole number in range, not '{}'",
                text.escape_debug()
            )),
        },
    }
}

/// Parses the arguments (without the program name); the error is one line
/// for a usage message.
pub fn parse_args(args: &[String]) -> Result<Mode, String> {
    let m = opts().parse(args).map_err(|e| e.to_string())?;
    if let Some(extra) = m.free.first() {
        return Err(format!("unexpected argument '{}'", extra.escape_debug()));
    }
    if m.opt_present("h") {
        return Ok(Mode::Help);
    }
    if m.opt_present("V") {
        return Ok(Mode::Version);
    }
    let exclusive = ["c", "C", "l", "S"]
        .iter()
        .filter(|o| m.opt_present(o))
        .count();
    if exclusive > 1 {
        return Err("-c, -C, -l and -S exclude each other".into());
    }
    if m.opt_present("l") {
        return Ok(Mode::List);
    }
    if m.opt_present("S") {
        return Ok(Mode::Status {
            pidfile: m.opt_str("p").unwrap_or(DEFAULT_PIDFILE.into()).into(),
            state_dir: m.opt_str("s").unwrap_or(DEFAULT_STATE_DIR.into()).into(),
        });
    }
    if let Some(path) = m.opt_str("C") {
        return Ok(Mode::Check(path.into()));
    }
    let Some(config) = m.opt_str("c") else {
        return Err("missing -c FILE (or -C FILE, -S, -l, -h)".into());
    };
    let mut o = Options::new(config.into());
    o.refresh = number::<u64>(&m, "r", 1, 7 * 86_400)?.map(Duration::from_secs);
    if let Some(n) = number::<usize>(&m, "m", 1, 1 << 24)? {
        o.max_sources = n;
    }
    if let Some(secs) = number::<u64>(&m, "t", 1, 86_400)? {
        o.command_limit = Duration::from_secs(secs);
    }
    if let Some(n) = number::<usize>(&m, "j", 1, 1024)? {
        o.max_running = n;
    }
    if let Some(n) = number::<usize>(&m, "n", 1, 1 << 20)? {
        o.max_doors = n;
    }
    if let Some(n) = number::<usize>(&m, "N", 1, 1 << 20)? {
        o.max_per_source = n;
    }
    if let Some(text) = m.opt_str("k") {
        o.keep_caps = caps::parse_keep(&text).map_err(|e| format!("-k: {e}"))?;
    }
    o.iface = m.opt_str("i");
    if let Some(name) = &o.iface {
        if name.is_empty() || name.len() > 15 || name.contains('/') {
            return Err(format!(
                "-i: '{}' is not an interface name",
                name.escape_debug()
            ));
        }
    }
    o.debug = m.opt_present("d");
    o.step_lines = !m.opt_present("q");
    o.daemon = m.opt_present("D");
    if let Some(p) = m.opt_str("p") {
        o.pidfile = p.into();
        o.pidfile_set = true;
    }
    if let Some(s) = m.opt_str("s") {
        o.state_dir = s.into();
    }
    Ok(Mode::Run(o))
}

/// Entry point of the binary: parse, dispatch, return the exit status
/// (see [`exit`]).
pub fn main() -> i32 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse_args(&args) {
        Err(msg) => {
            eprintln!("tportknockd: {msg}");
            eprint!("{}", usage());
            exit::USAGE
        }
        Ok(Mode::Help) => {
            print!("{}", usage());
            0
        }
        Ok(Mode::Version) => {
            println!("tportknockd {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Ok(Mode::Check(path)) => {
            crate::config::check::run(&path, &mut std::io::stdout(), &mut std::io::stderr())
        }
        Ok(Mode::List) => match crate::capture::netif::list() {
            Ok(ifaces) => {
                print!("{}", crate::daemon::iflist::format_list(&ifaces));
                0
            }
            Err(e) => {
                eprintln!("tportknockd: cannot list interfaces: {e}");
                1
            }
        },
        Ok(Mode::Status { pidfile, state_dir }) => {
            crate::daemon::status::run(&pidfile, &state_dir, &mut std::io::stdout())
        }
        Ok(Mode::Run(opts)) => crate::daemon::start(opts),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::caps::{CapSet, Keep};

    fn parse(s: &str) -> Result<Mode, String> {
        let args: Vec<String> = s.split_whitespace().map(str::to_owned).collect();
        parse_args(&args)
    }

    #[test]
    fn run_options_and_defaults() {
        let Mode::Run(o) = parse("-c k.conf -i eth0 -D -d -r 3600").unwrap() else {
            panic!()
        };
        assert_eq!(o.config, PathBuf::from("k.conf"));
        assert_eq!(o.iface.as_deref(), Some("eth0"));
        assert!(o.daemon && o.debug && o.step_lines);
        assert_eq!(o.refresh, Some(Duration::from_secs(3600)));
        assert_eq!(o.pidfile, PathBuf::from(DEFAULT_PIDFILE));
        assert_eq!(o.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        assert_eq!(o.max_sources, DEFAULT_CAPACITY);
        assert_eq!(o.command_limit, Duration::from_secs(60));
        assert_eq!(o.max_running, 16);
        assert!(!o.pidfile_set);
        assert_eq!(o.keep_caps, Keep::Only(caps::DEFAULT_KEEP));
        assert_eq!(
            (o.max_doors, o.max_per_source),
            (
                crate::doors::DEFAULT_MAX_DOORS,
                crate::doors::DEFAULT_MAX_PER_SOURCE
            )
        );
        let Mode::Run(o) = parse("-c k -p /tmp/p -s /tmp/s -m 10 -t 5 -j 2 -n 100 -N 3").unwrap()
        else {
            panic!()
        };
        assert_eq!((o.max_doors, o.max_per_source), (100, 3));
        assert_eq!(
            (o.max_sources, o.command_limit.as_secs(), o.max_running),
            (10, 5, 2)
        );
        assert_eq!(o.pidfile, PathBuf::from("/tmp/p"));
        assert!(o.pidfile_set);
        assert_eq!(o.state_dir, PathBuf::from("/tmp/s"));
        assert_eq!(o.iface, None);
        let Mode::Run(o) = parse("-c k -k all").unwrap() else {
            panic!()
        };
        assert_eq!(o.keep_caps, Keep::All);
        let Mode::Run(o) = parse("-c k -k cap_net_admin,cap_dac_override").unwrap() else {
            panic!()
        };
        assert_eq!(
            o.keep_caps,
            Keep::Only(CapSet::from_bits((1 << 12) | (1 << 1)))
        );
    }

    #[test]
    fn other_modes() {
        assert_eq!(parse("-C k.conf").unwrap(), Mode::Check("k.conf".into()));
        assert_eq!(parse("-l").unwrap(), Mode::List);
        assert_eq!(parse("-h").unwrap(), Mode::Help);
        assert_eq!(parse("-V").unwrap(), Mode::Version);
        assert_eq!(parse("--help").unwrap(), Mode::Help);
        assert_eq!(parse("--version").unwrap(), Mode::Version);
        assert_eq!(
            parse("-S").unwrap(),
            Mode::Status {
                pidfile: DEFAULT_PIDFILE.into(),
                state_dir: DEFAULT_STATE_DIR.into()
            }
        );
        assert_eq!(
            parse("--status --pidfile /tmp/t.pid -s /tmp/st").unwrap(),
            Mode::Status {
                pidfile: "/tmp/t.pid".into(),
                state_dir: "/tmp/st".into()
            }
        );
    }

    #[test]
    fn long_options_are_knockds_where_knockd_has_them() {
        let Mode::Run(o) = parse(
            "--config k.conf --interface eth0 --daemon --debug --pidfile /tmp/p --quiet \
             --state-dir /tmp/s --refresh 60 --max-sources 9 --command-timeout 7 --jobs 3 \
             --max-doors 50 --max-per-source 4 --keep-caps none",
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(o.config, PathBuf::from("k.conf"));
        assert_eq!(o.iface.as_deref(), Some("eth0"));
        // knockd's --daemon detaches and its --debug debugs, as here.
        assert!(o.daemon && o.debug && !o.step_lines);
        assert_eq!(o.pidfile, PathBuf::from("/tmp/p"));
        assert_eq!(o.state_dir, PathBuf::from("/tmp/s"));
        assert_eq!(o.refresh, Some(Duration::from_secs(60)));
        assert_eq!(
            (o.max_sources, o.command_limit.as_secs(), o.max_running),
            (9, 7, 3)
        );
        assert_eq!((o.max_doors, o.max_per_source), (50, 4));
        assert_eq!(o.keep_caps, Keep::Only(CapSet::EMPTY));
        assert_eq!(
            parse("--check k.conf").unwrap(),
            Mode::Check("k.conf".into())
        );
        assert_eq!(parse("--list").unwrap(), Mode::List);
    }

    #[test]
    fn written_out_usage_is_what_getopts_makes_of_the_options() {
        let brief = "Usage: tportknockd -c FILE [-i IFACE] [-r SEC] [-d] [-D] [options]\n       \
                     tportknockd -S [-p FILE] [-s DIR]\n       \
                     tportknockd -C FILE | -l | -h | -V";
        assert_eq!(USAGE, opts().usage(brief));
    }

    #[test]
    fn usage_errors() {
        for (args, needle) in [
            ("", "missing -c"),
            ("-c", "Argument to option 'c' missing"),
            ("-c k -r 0", "-r: expected"),
            ("-c k -r soon", "-r: expected"),
            ("-c k -m 0", "-m: expected"),
            ("-c k -n 0", "-n: expected"),
            ("-c k -N x", "-N: expected"),
            ("-c k -x", "Unrecognized option"),
            ("-c k stray", "unexpected argument"),
            ("-c k -C k", "exclude each other"),
            ("-S -c k", "exclude each other"),
            ("-c k -i averyveryverylongname", "not an interface name"),
            (
                "-c k -k cap_net_admin,cap_nope",
                "-k: unknown capability 'cap_nope'",
            ),
        ] {
            let e = parse(args).unwrap_err();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
    }
}

//! The `tportknockd` command line: the original's options (`-c -C -i -r -l
//! -d -D -h`) plus `-p`, `-s`, `-m`, `-t`, `-j`, `-n`, `-N`, `-k`, `-V`.

use std::path::PathBuf;
use std::time::Duration;

/// Everything the daemon needs from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub config: PathBuf,
    pub iface: Option<String>,
    /// `-r`: re-read own addresses every this many seconds.
    pub refresh: Option<Duration>,
    pub debug: bool,
    pub daemon: bool,
    pub pidfile: PathBuf,
    /// `-p` was given: a knockd config's `PidFile` does not override it.
    pub pidfile_set: bool,
    pub state_dir: PathBuf,
    pub max_sources: usize,
    pub command_limit: Duration,
    pub max_running: usize,
    /// `-n`: doors open at once, all events and sources together.
    pub max_doors: usize,
    /// `-N`: doors open at once for one source address.
    pub max_per_source: usize,
    /// `-k`: capabilities commands may hold (the bounding set kept after
    /// start-up as root); `None` keeps every one.
    pub keep_caps: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Run(Options),
    Check(PathBuf),
    List,
    Help,
    Version,
}

pub const DEFAULT_PIDFILE: &str = "/run/tportknockd.pid";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/tportknockd";
pub const DEFAULT_MAX_SOURCES: usize = 65_536;

fn opts() -> getopts::Options {
    let mut o = getopts::Options::new();
    o.optopt("c", "", "run with the knock sequences in FILE", "FILE");
    o.optopt(
        "C",
        "",
        "check FILE, print its events and warnings, exit",
        "FILE",
    );
    o.optopt(
        "i",
        "",
        "capture on IFACE (default: all interfaces)",
        "IFACE",
    );
    o.optopt(
        "r",
        "",
        "also re-read own addresses every SEC seconds",
        "SEC",
    );
    o.optflag("l", "", "list interfaces and exit");
    o.optflag("d", "", "debug: log every step matched, reset and timeout");
    o.optflag("D", "", "run as a daemon (detach; log to syslog)");
    o.optopt(
        "p",
        "",
        &format!("pid file (default {DEFAULT_PIDFILE})"),
        "FILE",
    );
    o.optopt(
        "s",
        "",
        &format!("state directory for the door journal (default {DEFAULT_STATE_DIR})"),
        "DIR",
    );
    o.optopt(
        "m",
        "",
        &format!("sources tracked at once (default {DEFAULT_MAX_SOURCES})"),
        "N",
    );
    o.optopt(
        "t",
        "",
        "terminate a command still running after SEC seconds (default 60)",
        "SEC",
    );
    o.optopt(
        "j",
        "",
        "commands running at once (default 16; the rest queue)",
        "N",
    );
    o.optopt(
        "n",
        "",
        &format!(
            "doors open at once; further knocks are logged and refused (default {})",
            crate::doors::DEFAULT_MAX_DOORS
        ),
        "N",
    );
    o.optopt(
        "N",
        "",
        &format!(
            "doors open at once for one source address (default {})",
            crate::doors::DEFAULT_MAX_PER_SOURCE
        ),
        "N",
    );
    o.optopt(
        "k",
        "",
        "capabilities commands keep when run as root: a list like \
         cap_net_admin,cap_net_raw (the default), none, or all",
        "CAPS",
    );
    o.optflag("V", "version", "print the version and exit");
    o.optflag("h", "help", "print this help and exit");
    o
}

/// `-h` without the note: what getopts' `usage` makes of [`opts`] and
/// the two usage lines, written out so that the daemon does not carry
/// getopts' text layout and Unicode width tables (about 18 KiB); a test
/// keeps the two the same.
const USAGE: &str = "\
Usage: tportknockd -c FILE [-i IFACE] [-r SEC] [-d] [-D] [options]
       tportknockd -C FILE | -l | -h | -V

Options:
    -c FILE             run with the knock sequences in FILE
    -C FILE             check FILE, print its events and warnings, exit
    -i IFACE            capture on IFACE (default: all interfaces)
    -r SEC              also re-read own addresses every SEC seconds
    -l                  list interfaces and exit
    -d                  debug: log every step matched, reset and timeout
    -D                  run as a daemon (detach; log to syslog)
    -p FILE             pid file (default /run/tportknockd.pid)
    -s DIR              state directory for the door journal (default
                        /var/lib/tportknockd)
    -m N                sources tracked at once (default 65536)
    -t SEC              terminate a command still running after SEC seconds
                        (default 60)
    -j N                commands running at once (default 16; the rest queue)
    -n N                doors open at once; further knocks are logged and
                        refused (default 4096)
    -N N                doors open at once for one source address (default 32)
    -k CAPS             capabilities commands keep when run as root: a list
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
                           knockd; -l lists interfaces (knockd's -l resolves names).\n";

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
    let exclusive = ["c", "C", "l"].iter().filter(|o| m.opt_present(o)).count();
    if exclusive > 1 {
        return Err("-c, -C and -l exclude each other".into());
    }
    if m.opt_present("l") {
        return Ok(Mode::List);
    }
    if let Some(path) = m.opt_str("C") {
        return Ok(Mode::Check(path.into()));
    }
    let Some(config) = m.opt_str("c") else {
        return Err("missing -c FILE (or -C FILE, -l, -h)".into());
    };
    let refresh = number::<u64>(&m, "r", 1, 7 * 86_400)?.map(Duration::from_secs);
    let max_sources = number::<usize>(&m, "m", 1, 1 << 24)?.unwrap_or(DEFAULT_MAX_SOURCES);
    let command_limit = Duration::from_secs(number::<u64>(&m, "t", 1, 86_400)?.unwrap_or(60));
    let max_running = number::<usize>(&m, "j", 1, 1024)?.unwrap_or(16);
    let max_doors =
        number::<usize>(&m, "n", 1, 1 << 20)?.unwrap_or(crate::doors::DEFAULT_MAX_DOORS);
    let max_per_source =
        number::<usize>(&m, "N", 1, 1 << 20)?.unwrap_or(crate::doors::DEFAULT_MAX_PER_SOURCE);
    let keep_caps = match m.opt_str("k") {
        None => Some(crate::sys::caps::DEFAULT_KEEP),
        Some(text) => crate::sys::caps::parse_list(&text).map_err(|e| format!("-k: {e}"))?,
    };
    let iface = m.opt_str("i");
    if let Some(name) = &iface {
        if name.is_empty() || name.len() > 15 || name.contains('/') {
            return Err(format!(
                "-i: '{}' is not an interface name",
                name.escape_debug()
            ));
        }
    }
    Ok(Mode::Run(Options {
        config: config.into(),
        iface,
        refresh,
        debug: m.opt_present("d"),
        daemon: m.opt_present("D"),
        pidfile_set: m.opt_present("p"),
        pidfile: m
            .opt_str("p")
            .unwrap_or_else(|| DEFAULT_PIDFILE.into())
            .into(),
        state_dir: m
            .opt_str("s")
            .unwrap_or_else(|| DEFAULT_STATE_DIR.into())
            .into(),
        max_sources,
        command_limit,
        max_running,
        max_doors,
        max_per_source,
        keep_caps,
    }))
}

/// Entry point of the binary: parse, dispatch, return the exit status
/// (0 fine, 1 failure or invalid config, 2 wrong usage).
pub fn main() -> i32 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse_args(&args) {
        Err(msg) => {
            eprintln!("tportknockd: {msg}");
            eprint!("{}", usage());
            2
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
                print!("{}", crate::capture::netif::format_list(&ifaces));
                0
            }
            Err(e) => {
                eprintln!("tportknockd: cannot list interfaces: {e}");
                1
            }
        },
        Ok(Mode::Run(opts)) => crate::daemon::start(opts),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(o.daemon && o.debug);
        assert_eq!(o.refresh, Some(Duration::from_secs(3600)));
        assert_eq!(o.pidfile, PathBuf::from(DEFAULT_PIDFILE));
        assert_eq!(o.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        assert_eq!(o.max_sources, DEFAULT_MAX_SOURCES);
        assert_eq!(o.command_limit, Duration::from_secs(60));
        assert_eq!(o.keep_caps, Some(crate::sys::caps::DEFAULT_KEEP));
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
        assert_eq!(o.iface, None);
        let Mode::Run(o) = parse("-c k -k all").unwrap() else {
            panic!()
        };
        assert_eq!(o.keep_caps, None);
        let Mode::Run(o) = parse("-c k -k cap_net_admin,cap_dac_override").unwrap() else {
            panic!()
        };
        assert_eq!(o.keep_caps, Some((1 << 12) | (1 << 1)));
    }

    #[test]
    fn other_modes() {
        assert_eq!(parse("-C k.conf").unwrap(), Mode::Check("k.conf".into()));
        assert_eq!(parse("-l").unwrap(), Mode::List);
        assert_eq!(parse("-h").unwrap(), Mode::Help);
        assert_eq!(parse("-V").unwrap(), Mode::Version);
        assert_eq!(parse("--help").unwrap(), Mode::Help);
        assert_eq!(parse("--version").unwrap(), Mode::Version);
    }

    #[test]
    fn written_out_usage_is_what_getopts_makes_of_the_options() {
        let brief = "Usage: tportknockd -c FILE [-i IFACE] [-r SEC] [-d] [-D] [options]\n       \
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

//! `tportknock`, the client: knocks a sequence at a host, including TCP
//! frames with exact flags (flag-knocking), which knockd's `knock` cannot
//! send. TCP frames go out through a raw socket carrying a header built in
//! [`segment`]; without the privilege for one, SYN steps fall back to a
//! plain non-blocking `connect`, as `knock` does, so a SYN/UDP sequence
//! needs no privileges.
//!
//! For a rotating event (`-c FILE -e EVENT` naming an event with
//! `key_file`), the client reads the key under the daemon's rules and sends
//! the current window's sequence; `-p` prints it instead, `-o` shifts the
//! clock it is computed for.

pub mod segment;

use crate::config;
use crate::knock::rotate::{unix_now, WindowLen};
use crate::knock::{flags, FlagSpec, Proto, Step, StepError};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Pause between frames: long enough that frames leave in order and a
/// daemon sees them in order, short enough that a sequence takes well under
/// a second.
pub const DEFAULT_DELAY: Duration = Duration::from_millis(10);

/// Longest `-d`: a delay beyond a minute only outlives any sensible timeout.
pub const MAX_DELAY_MS: u64 = 60_000;

/// How long a connect()ing socket is kept after its SYN went out. Closing a
/// socket in SYN-SENT sends nothing, so the SYN stands alone either way; the
/// margin only lets the frame leave the host first.
const SYN_LINGER: Duration = Duration::from_millis(2);

/// Source ports are drawn from the dynamic range (RFC 6335).
const SRC_PORT_BASE: u16 = 49152;

/// Largest `-o`: ten years either way, far beyond any clock error, far
/// within the window arithmetic.
pub const MAX_CLOCK_OFFSET: i64 = 10 * 365 * 86_400;

const USAGE: &str = "usage: tportknock [-46uv] [-d MS] HOST STEP...\n       \
                     tportknock [-46v] [-d MS] [-o SECONDS] -c FILE -e EVENT HOST\n       \
                     tportknock -p [-v] [-o SECONDS] -c FILE -e EVENT\n       \
                     tportknock -K FILE";

const HELP: &str = "\
Knocks a sequence of frames at HOST, including TCP frames with exact flags.

STEP is protocol:port[:flags] as in tportknockd's knock.conf (udp:1234
tcp:123:frap tcp:434:x tcp:2345:n), or knockd style: PORT or PORT:tcp (a
TCP SYN), PORT:udp (a UDP datagram); with -u a bare PORT is UDP.
TCP flags: f FIN, s SYN, r RST, p PSH, a ACK, u URG, in any combination;
x all six, n none (also meant when no flags are given), i any (sends SYN).

  -c, --config FILE  read the sequence of EVENT from FILE (a knock.conf)
  -e, --event EVENT  the event whose sequence to knock (with -c); for a
                     rotating event (one with key_file), the current
                     window's sequence, from the key file it names
  -p, --print        print EVENT's sequence (the current one, if it rotates)
                     as STEPs on one line instead of knocking; no HOST
  -o, --clock-offset SECONDS
                     compute a rotating sequence for the clock shifted by
                     SECONDS (negative: earlier), e.g. to test clock skew
  -d, --delay MS     wait MS milliseconds between frames (default 10)
  -u, --udp          a bare PORT is a UDP datagram instead of a TCP SYN
  -4, --ipv4         use only an IPv4 address of HOST
  -6, --ipv6         use only an IPv6 address of HOST
  -v, --verbose      print each frame as it is sent
  -K, --genkey FILE  write a new random key for a rotating event to FILE
                     (mode 0600, never replacing a file) and exit; the key
                     is not shown
  -h, --help         show this help and exit
  -V, --version      show the version and exit

TCP steps other than a plain SYN need root or CAP_NET_RAW.";

/// Address family forced by `-4` / `-6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `-4`: only an IPv4 address of HOST.
    V4,
    /// `-6`: only an IPv6 address of HOST.
    V6,
}

/// A step with its spelling on the command line, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// As typed, e.g. `tcp:7000:fs` or `7000:udp`.
    pub text: String,
    /// What it was parsed to.
    pub step: Step,
}

/// Where the steps come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sequence {
    /// `HOST STEP…`: the steps on the command line, in order.
    Steps(Vec<Frame>),
    /// `-c FILE -e EVENT`.
    Event {
        /// The knock.conf.
        file: PathBuf,
        /// The event's name.
        name: String,
        /// `-o`: seconds added to the clock a rotating sequence is
        /// computed for.
        clock_offset: i64,
    },
}

/// A knock to perform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// HOST as given: a name or a literal (IPv6 optionally in brackets),
    /// resolved by [`resolve`].
    pub host: String,
    /// The steps, or the event to take them from.
    pub sequence: Sequence,
    /// `-d`: the pause between frames, so they arrive in order.
    pub delay: Duration,
    /// `-4`/`-6`; `None`: the first address HOST resolves to.
    pub family: Option<Family>,
    /// `-v`: print each frame as it is sent.
    pub verbose: bool,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `-h`, `--help`.
    Help,
    /// `-V`, `--version`.
    Version,
    /// Send a knock.
    Knock(Options),
    /// `-p -c FILE -e EVENT`: print the sequence (a [`Sequence::Event`]).
    Print {
        /// What to print.
        sequence: Sequence,
        /// `-v`: also say which window, on standard error.
        verbose: bool,
    },
    /// `-K FILE`: write a new key file.
    GenKey(PathBuf),
}

/// A command line that makes no sense (exit status 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

/// A knock that could not be carried out (exit status 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}
impl std::error::Error for Error {}

/// Entry point of the `tportknock` binary; returns the exit status.
pub fn main() -> i32 {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    match parse_args(&args) {
        Err(e) => {
            say(io::stderr(), format_args!("tportknock: {e}\n{USAGE}"));
            2
        }
        Ok(Command::Help) => {
            say(io::stdout(), format_args!("{USAGE}\n\n{HELP}"));
            0
        }
        Ok(Command::Version) => {
            say(
                io::stdout(),
                format_args!("tportknock {}", env!("CARGO_PKG_VERSION")),
            );
            0
        }
        Ok(Command::GenKey(file)) => crate::crypto::keyfile::genkey_command(
            &file,
            &mut io::stdout(),
            &mut io::stderr(),
            "tportknock",
        ),
        Ok(Command::Knock(opts)) => report(run(&opts)),
        Ok(Command::Print { sequence, verbose }) => report(print(&sequence, verbose)),
    }
}

/// Exit status 0, or 1 with the error on standard error.
fn report(result: Result<(), Error>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(e) => {
            for line in e.0.lines() {
                say(io::stderr(), format_args!("tportknock: {line}"));
            }
            1
        }
    }
}

/// Writes a line; a closed pipe (`tportknock -v … | head -1`) must not
/// stop the knock half-way, as `println!` would by panicking.
fn say(mut out: impl io::Write, args: fmt::Arguments<'_>) {
    let _ = writeln!(out, "{args}");
}

/// Parses the arguments after the program name.
pub fn parse_args<S: AsRef<OsStr>>(args: &[S]) -> Result<Command, UsageError> {
    let mut spec = getopts::Options::new();
    spec.optopt("d", "delay", "", "MS")
        .optflag("4", "ipv4", "")
        .optflag("6", "ipv6", "")
        .optflag("v", "verbose", "")
        .optflag("u", "udp", "")
        .optopt("c", "config", "", "FILE")
        .optopt("e", "event", "", "EVENT")
        .optflag("h", "help", "")
        .optflag("V", "version", "")
        .optopt("K", "genkey", "", "FILE")
        .optflag("p", "print", "")
        .optopt("o", "clock-offset", "", "SECONDS");
    let m = spec.parse(args).map_err(|e| UsageError(e.to_string()))?;
    if m.opt_present("h") {
        return Ok(Command::Help);
    }
    if m.opt_present("V") {
        return Ok(Command::Version);
    }
    if let Some(file) = m.opt_str("K") {
        return genkey_args(file, &m);
    }
    let family = match (m.opt_present("4"), m.opt_present("6")) {
        (true, true) => return Err(UsageError("-4 and -6 exclude each other".into())),
        (true, false) => Some(Family::V4),
        (false, true) => Some(Family::V6),
        (false, false) => None,
    };
    let delay = match m.opt_str("d") {
        None => DEFAULT_DELAY,
        Some(text) => parse_delay(&text)?,
    };
    let verbose = m.opt_present("v");
    let clock_offset = match m.opt_str("o") {
        None => 0,
        Some(text) => parse_clock_offset(&text)?,
    };
    let (config_file, event) = (m.opt_str("c"), m.opt_str("e"));
    if m.opt_present("o") && (config_file.is_none() || event.is_none()) {
        return Err(UsageError(
            "-o shifts the clock of a rotating event's sequence: give it with -c FILE -e EVENT"
                .into(),
        ));
    }
    if m.opt_present("p") {
        return print_args(config_file, event, clock_offset, verbose, &m);
    }
    // knock's -u: what a port without a protocol means.
    let bare = if m.opt_present("u") {
        Proto::Udp
    } else {
        Proto::Tcp
    };
    let mut free = m.free.into_iter();
    let host = match free.next() {
        Some(h) if !h.is_empty() => h,
        Some(_) => return Err(UsageError("HOST is empty".into())),
        None => return Err(UsageError("missing HOST".into())),
    };
    let sequence = match (config_file, event) {
        (Some(_), Some(_)) if bare == Proto::Udp => {
            return Err(UsageError(
                "-u applies to PORT steps; the event in -c FILE names its own protocols".into(),
            ))
        }
        (Some(file), Some(name)) => {
            if let Some(extra) = free.next() {
                return Err(UsageError(format!(
                    "with -c and -e give only HOST, not '{}'",
                    extra.escape_debug()
                )));
            }
            Sequence::Event {
                file: PathBuf::from(file),
                name,
                clock_offset,
            }
        }
        (Some(_), None) => return Err(UsageError("-c needs -e EVENT".into())),
        (None, Some(_)) => return Err(UsageError("-e needs -c FILE".into())),
        (None, None) => {
            let steps = free
                .map(|text| parse_step_bare(&text, bare).map(|step| Frame { text, step }))
                .collect::<Result<Vec<Frame>, StepError>>()
                .map_err(|e| UsageError(e.0))?;
            if steps.is_empty() {
                return Err(UsageError("missing STEP after HOST".into()));
            }
            Sequence::Steps(steps)
        }
    };
    Ok(Command::Knock(Options {
        host,
        sequence,
        delay,
        family,
        verbose,
    }))
}

/// `-p`: an event's sequence, printed; only `-v` and `-o` go with it.
fn print_args(
    file: Option<String>,
    event: Option<String>,
    clock_offset: i64,
    verbose: bool,
    m: &getopts::Matches,
) -> Result<Command, UsageError> {
    let (Some(file), Some(name)) = (file, event) else {
        return Err(UsageError(
            "-p prints an event's sequence: give -c FILE -e EVENT".into(),
        ));
    };
    if let Some(extra) = m.free.first() {
        return Err(UsageError(format!(
            "-p prints and sends nothing: give no HOST or STEP, not '{}'",
            extra.escape_debug()
        )));
    }
    if let Some(o) = ["d", "4", "6", "u"].iter().find(|o| m.opt_present(o)) {
        return Err(UsageError(format!("-{o} has no meaning with -p")));
    }
    Ok(Command::Print {
        sequence: Sequence::Event {
            file: PathBuf::from(file),
            name,
            clock_offset,
        },
        verbose,
    })
}

fn parse_clock_offset(text: &str) -> Result<i64, UsageError> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    match text.parse::<i64>() {
        Ok(secs)
            if secs.abs() <= MAX_CLOCK_OFFSET
                && !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Ok(secs)
        }
        _ => Err(UsageError(format!(
            "-o wants whole seconds from -{MAX_CLOCK_OFFSET} to {MAX_CLOCK_OFFSET}, not '{}'",
            text.escape_debug()
        ))),
    }
}

/// `-K FILE` stands alone: nothing else on the line has a meaning with it.
fn genkey_args(file: String, m: &getopts::Matches) -> Result<Command, UsageError> {
    let others = ["d", "4", "6", "v", "c", "e", "p", "o", "u"];
    if file.is_empty() || !m.free.is_empty() || others.iter().any(|o| m.opt_present(o)) {
        return Err(UsageError("-K takes a FILE and nothing else".into()));
    }
    Ok(Command::GenKey(PathBuf::from(file)))
}

fn parse_delay(text: &str) -> Result<Duration, UsageError> {
    match text.parse::<u64>() {
        Ok(ms) if ms <= MAX_DELAY_MS && text.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(Duration::from_millis(ms))
        }
        _ => Err(UsageError(format!(
            "-d wants milliseconds from 0 to {MAX_DELAY_MS}, not '{}'",
            text.escape_debug()
        ))),
    }
}

/// One STEP argument: the daemon's frame syntax (`tcp:123:frap`), or
/// knockd's `PORT[:tcp|:udp]`, where TCP means a SYN.
pub fn parse_step(text: &str) -> Result<Step, StepError> {
    parse_step_bare(text, Proto::Tcp)
}

/// [`parse_step`], a bare `PORT` meaning `bare` (UDP after knock's `-u`).
pub fn parse_step_bare(text: &str, bare: Proto) -> Result<Step, StepError> {
    let (port_text, proto_text) = match text.split_once(':') {
        Some((port, proto)) => (port, Some(proto)),
        None => (text, None),
    };
    if port_text.is_empty() || !port_text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse();
    }
    let bad = |msg: &str| StepError(format!("frame '{}': {msg}", text.escape_debug()));
    let port = match port_text.parse::<u16>() {
        Ok(p) if p >= 1 => p,
        _ => return Err(bad("port must be a number from 1 to 65535")),
    };
    let proto = match proto_text {
        None => bare,
        Some(p) if p.eq_ignore_ascii_case("tcp") => Proto::Tcp,
        Some(p) if p.eq_ignore_ascii_case("udp") => Proto::Udp,
        Some(_) => return Err(bad("knockd-style steps are PORT, PORT:tcp or PORT:udp")),
    };
    let flags = match proto {
        Proto::Tcp => FlagSpec::Exact(flags::SYN),
        Proto::Udp => FlagSpec::Any,
    };
    Ok(Step { proto, port, flags })
}

/// The TCP flag byte a step puts on the wire; `None` for UDP. `i` (any
/// flags) sends a SYN: the frame firewalls pass most readily, and one an
/// unprivileged `connect` can send.
pub fn wire_flags(step: &Step) -> Option<u8> {
    match (step.proto, step.flags) {
        (Proto::Udp, _) => None,
        (Proto::Tcp, FlagSpec::Any) => Some(flags::SYN),
        (Proto::Tcp, FlagSpec::Exact(bits)) => Some(bits),
        // knockd's TCPFlags: the flags it demands, else a SYN if allowed.
        (Proto::Tcp, spec @ FlagSpec::Mask { set, .. }) => Some(if set != 0 {
            set
        } else {
            [flags::SYN, flags::ACK, flags::FIN, 0]
                .into_iter()
                .find(|&f| spec.accepts(f))
                .unwrap_or(0)
        }),
    }
}

/// Does the step need a raw socket (any TCP frame but a lone SYN)?
pub fn needs_raw(step: &Step) -> bool {
    matches!(wire_flags(step), Some(bits) if bits != flags::SYN)
}

/// `FIN,RST,PSH,ACK`, or `none`.
pub fn flag_names(bits: u8) -> String {
    let names = crate::knock::flag_names(bits);
    if names.is_empty() {
        "none".into()
    } else {
        names.join(",")
    }
}

/// The first address of HOST (a name or a literal, IPv6 optionally in
/// brackets) of the wanted family.
pub fn resolve(host: &str, family: Option<Family>) -> Result<IpAddr, Error> {
    let name = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let shown = host.escape_debug();
    let addrs = (name, 0u16)
        .to_socket_addrs()
        .map_err(|e| Error(format!("{shown}: {e}")))?;
    let wanted = |ip: &IpAddr| match family {
        None => true,
        Some(Family::V4) => ip.is_ipv4(),
        Some(Family::V6) => ip.is_ipv6(),
    };
    let found = addrs.map(|a| a.ip()).find(wanted);
    found.ok_or_else(|| {
        Error(match family {
            Some(Family::V4) => format!("{shown}: no IPv4 address"),
            Some(Family::V6) => format!("{shown}: no IPv6 address"),
            None => format!("{shown}: no address"),
        })
    })
}

/// The sequence of `name` in the knock.conf at `file`, read with the
/// daemon's own parser (but without its ownership check: nothing runs).
/// A rotating event's key file is read under the daemon's rules, and its
/// sequence is the current window's ([`Now`]).
pub fn event_steps(file: &Path, name: &str, clock_offset: i64) -> Result<Vec<Step>, Error> {
    event_sequence(file, name, clock_offset).map(|(steps, _)| steps)
}

/// For a rotating event: the window a sequence was computed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Window length.
    pub window: WindowLen,
    /// The (shifted) Unix time it was computed for.
    pub unix_secs: u64,
}

impl Now {
    /// `window 56666666 (30 s), 18 s left`.
    pub fn describe(&self) -> String {
        let w = self.window.index(self.unix_secs);
        let left = self.window.next_change(self.unix_secs) - self.unix_secs;
        format!("window {w} ({} s), {left} s left", self.window.secs())
    }
}

/// [`event_steps`], and for a rotating event the window it used.
pub fn event_sequence(
    file: &Path,
    name: &str,
    clock_offset: i64,
) -> Result<(Vec<Step>, Option<Now>), Error> {
    let shown = file.display().to_string();
    // The daemon's limits and messages: a regular file of bounded size
    // (`-c /dev/zero` or a FIFO must fail at once, not eat memory or hang).
    let bytes = config::read_limited(file).map_err(|e| Error(e.to_string()))?;
    let config = config::parse(&bytes, &shown).map_err(|e| Error(e.to_string()))?;
    let names: Vec<String> = config.events.iter().map(|e| e.name.clone()).collect();
    let found = config.events.into_iter().find(|e| e.name == name);
    if let Some(mut rotation) = found.as_ref().and_then(|e| e.rotation.clone()) {
        rotation
            .load_key(file)
            .map_err(|e| Error(format!("{shown}: event '{name}': key_file: {e}")))?;
        let now = Now {
            window: rotation.window,
            unix_secs: unix_now(clock_offset),
        };
        let w = rotation.window.index(now.unix_secs);
        let steps = rotation.sequence(name, w).ok_or_else(|| {
            Error(format!(
                "{shown}: event '{name}': no sequence for window {w}"
            ))
        })?;
        return Ok((steps, Some(now)));
    }
    if clock_offset != 0 && found.is_some() {
        return Err(Error(format!(
            "{shown}: event '{}' has a fixed sequence (no key_file): -o applies to rotating \
             events only",
            name.escape_debug()
        )));
    }
    match found {
        Some(event) if !event.sequence.is_empty() => Ok((event.sequence, None)),
        Some(event) if event.one_time.is_some() => Err(Error(format!(
            "{shown}: event '{}' takes one-time sequences from a file; give the ports \
             of the current one on the command line",
            name.escape_debug()
        ))),
        Some(_) => Err(Error(format!(
            "{shown}: event '{}' has no sequence",
            name.escape_debug()
        ))),
        None => Err(Error(format!(
            "{shown}: no event '{}' (events: {})",
            name.escape_debug(),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        ))),
    }
}

/// `-p`: the event's sequence as STEPs on one line of standard output
/// (what `tportknock HOST STEP...` takes); with `verbose`, the window on
/// standard error.
pub fn print(sequence: &Sequence, verbose: bool) -> Result<(), Error> {
    let Sequence::Event {
        file,
        name,
        clock_offset,
    } = sequence
    else {
        return Err(Error("-p prints an event's sequence".into()));
    };
    let (steps, now) = event_sequence(file, name, *clock_offset)?;
    let texts: Vec<String> = steps.iter().map(|s| s.to_string()).collect();
    say(io::stdout(), format_args!("{}", texts.join(" ")));
    if let (true, Some(now)) = (verbose, now) {
        say(io::stderr(), format_args!("tportknock: {}", now.describe()));
    }
    Ok(())
}

/// Knocks: resolves HOST, opens every socket the steps need (so a missing
/// privilege stops the run before the first frame), then sends.
pub fn run(opts: &Options) -> Result<(), Error> {
    let frames = match &opts.sequence {
        Sequence::Steps(frames) => frames.clone(),
        Sequence::Event {
            file,
            name,
            clock_offset,
        } => event_steps(file, name, *clock_offset)?
            .into_iter()
            .map(|step| Frame {
                text: step.to_string(),
                step,
            })
            .collect(),
    };
    let dst = resolve(&opts.host, opts.family)?;
    let sender = Sender::open(dst, &frames)?;
    for (i, frame) in frames.iter().enumerate() {
        let lingering = sender
            .send(&frame.step)
            .map_err(|e| Error(format!("step {} ({}): {e}", i + 1, frame.text)))?;
        if opts.verbose {
            say(
                io::stdout(),
                format_args!("{}", frame_line(dst, &frame.step)),
            );
        }
        let last = i + 1 == frames.len();
        let mut pause = if last { Duration::ZERO } else { opts.delay };
        if lingering.is_some() {
            pause = pause.max(SYN_LINGER);
        }
        std::thread::sleep(pause);
        drop(lingering);
    }
    Ok(())
}

/// `tcp 10.0.0.1:7000 flags FIN,RST,PSH,ACK` or `udp [fd00::1]:1234`.
pub fn frame_line(dst: IpAddr, step: &Step) -> String {
    let to = SocketAddr::new(dst, step.port);
    match wire_flags(step) {
        Some(bits) => format!("tcp {to} flags {}", flag_names(bits)),
        None => format!("udp {to}"),
    }
}

/// Raw TCP: one source address, port and sequence number for the run.
struct RawTcp {
    socket: Socket,
    src: IpAddr,
    src_port: u16,
    seq: u32,
}

/// Every socket the sequence needs, opened before the first frame.
struct Sender {
    dst: IpAddr,
    /// `None` when no raw socket could be had and no step needs one; SYN
    /// steps then go through `connect`.
    raw: Option<RawTcp>,
    udp: Option<UdpSocket>,
}

impl Sender {
    fn open(dst: IpAddr, frames: &[Frame]) -> Result<Sender, Error> {
        let any = |proto| frames.iter().any(|f| f.step.proto == proto);
        let raw = if any(Proto::Tcp) {
            match open_raw(dst) {
                Ok(socket) => {
                    let r = random_u64();
                    Some(RawTcp {
                        socket,
                        src: source_address(dst)?,
                        src_port: SRC_PORT_BASE
                            + (r % u64::from(u16::MAX - SRC_PORT_BASE + 1)) as u16,
                        seq: (r >> 32) as u32,
                    })
                }
                Err(e) => {
                    let first = frames.iter().enumerate().find(|(_, f)| needs_raw(&f.step));
                    if let Some((i, frame)) = first {
                        let (n, text) = (i + 1, &frame.text);
                        return Err(Error(if e.kind() == io::ErrorKind::PermissionDenied {
                            format!("step {n} ({text}) needs root or CAP_NET_RAW to send exact TCP flags")
                        } else {
                            format!("step {n} ({text}): cannot open a raw socket: {e}")
                        }));
                    }
                    None
                }
            }
        } else {
            None
        };
        let udp = if any(Proto::Udp) {
            let socket = UdpSocket::bind(SocketAddr::new(unspecified(dst), 0))
                .map_err(|e| Error(format!("cannot open a UDP socket: {e}")))?;
            Some(socket)
        } else {
            None
        };
        Ok(Sender { dst, raw, udp })
    }

    /// Sends one step; returns a connect()ing socket to keep a moment.
    fn send(&self, step: &Step) -> io::Result<Option<Socket>> {
        let to = SocketAddr::new(self.dst, step.port);
        match (wire_flags(step), &self.raw, &self.udp) {
            (None, _, Some(udp)) => {
                udp.send_to(b"", to)?;
                Ok(None)
            }
            (Some(bits), Some(raw), _) => {
                let seg =
                    segment::tcp_segment(raw.src, self.dst, raw.src_port, step.port, raw.seq, bits);
                // Raw sockets take no port; IPv6 would reject one that is
                // not the protocol number.
                raw.socket
                    .send_to(&seg, &SockAddr::from(SocketAddr::new(self.dst, 0)))?;
                Ok(None)
            }
            (Some(bits), None, _) if bits == flags::SYN => connect_syn(to).map(Some),
            _ => Err(io::Error::other("no socket for this step")),
        }
    }
}

/// A raw TCP socket; the kernel writes the IP header, we the TCP header
/// including its checksum (Linux leaves TCP checksums of raw sockets alone).
fn open_raw(dst: IpAddr) -> io::Result<Socket> {
    Socket::new_raw(
        Domain::for_address(SocketAddr::new(dst, 0)),
        Type::RAW,
        Some(Protocol::TCP),
    )
}

/// The address the kernel will send from towards `dst`, which the TCP
/// checksum covers. A UDP connect only looks up the route; nothing is sent.
fn source_address(dst: IpAddr) -> Result<IpAddr, Error> {
    let probe = || -> io::Result<IpAddr> {
        let socket = UdpSocket::bind(SocketAddr::new(unspecified(dst), 0))?;
        socket.connect(SocketAddr::new(dst, 9))?;
        Ok(socket.local_addr()?.ip())
    };
    probe().map_err(|e| Error(format!("no source address towards {dst}: {e}")))
}

/// Starts a connection to `to`: the kernel sends the SYN right away.
fn connect_syn(to: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(to), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    match socket.connect(&SockAddr::from(to)) {
        Ok(()) => Ok(socket),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(socket),
        // A refusal can only come after the SYN went out.
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(socket),
        Err(e) => Err(e),
    }
}

fn unspecified(like: IpAddr) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// Random bits for the source port and sequence number. `RandomState` keys
/// come from the OS's random source; that is plenty for values that carry
/// no secret and only should not repeat from run to run.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(text: &str) -> Step {
        parse_step(text).unwrap()
    }

    fn knock(args: &[&str]) -> Options {
        match parse_args(args) {
            Ok(Command::Knock(o)) => o,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    fn usage_error(args: &[&str]) -> String {
        match parse_args(args) {
            Err(UsageError(msg)) => msg,
            other => panic!("{args:?} should be a usage error: {other:?}"),
        }
    }

    #[test]
    fn frame_syntax_steps_go_through_the_daemons_parser() {
        for text in [
            "udp:1234",
            "tcp:543",
            "tcp:543:i",
            "tcp:123:frap",
            "tcp:434:x",
        ] {
            assert_eq!(step(text), text.parse::<Step>().unwrap(), "{text}");
        }
        assert_eq!(wire_flags(&step("tcp:543")), Some(0));
        assert_eq!(wire_flags(&step("tcp:543:n")), Some(0));
        assert_eq!(wire_flags(&step("tcp:543:i")), Some(flags::SYN));
        assert_eq!(wire_flags(&step("tcp:123:frap")), Some(0x1d));
        assert_eq!(wire_flags(&step("tcp:434:x")), Some(0x3f));
        assert_eq!(wire_flags(&step("tcp:110:up")), Some(0x28));
        assert_eq!(wire_flags(&step("udp:1234")), None);
    }

    #[test]
    fn knockd_style_steps_mean_syn_or_udp() {
        let syn = |port| Step {
            proto: Proto::Tcp,
            port,
            flags: FlagSpec::Exact(flags::SYN),
        };
        assert_eq!(step("7000"), syn(7000));
        assert_eq!(step("7002:tcp"), syn(7002));
        assert_eq!(step("7002:TCP"), syn(7002));
        assert_eq!(
            step("7001:udp"),
            Step {
                proto: Proto::Udp,
                port: 7001,
                flags: FlagSpec::Any
            }
        );
        assert_eq!(step("65535").port, 65535);
        for (text, needle) in [
            ("0", "port must be"),
            ("65536", "port must be"),
            ("7000:icmp", "PORT, PORT:tcp or PORT:udp"),
            ("7000:", "PORT, PORT:tcp or PORT:udp"),
            ("7000:tcp:s", "PORT, PORT:tcp or PORT:udp"),
            ("-1", "protocol must be tcp or udp"),
            ("", "protocol must be tcp or udp"),
            ("tcp:1:q", "unknown flag"),
        ] {
            let e = parse_step(text).unwrap_err();
            assert!(e.0.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn only_non_syn_tcp_steps_need_raw_sockets() {
        for text in ["7000", "7000:udp", "udp:1", "tcp:1:s", "tcp:1:i", "tcp:1:S"] {
            assert!(!needs_raw(&step(text)), "{text}");
        }
        for text in [
            "tcp:1",
            "tcp:1:n",
            "tcp:1:sa",
            "tcp:1:x",
            "tcp:1:f",
            "tcp:1:frap",
        ] {
            assert!(needs_raw(&step(text)), "{text}");
        }
    }

    #[test]
    fn frames_are_described_as_sent() {
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let v6: IpAddr = "fd00::1".parse().unwrap();
        assert_eq!(
            frame_line(v4, &step("tcp:7000:frap")),
            "tcp 10.0.0.1:7000 flags FIN,RST,PSH,ACK"
        );
        assert_eq!(
            frame_line(v4, &step("tcp:7000:x")),
            "tcp 10.0.0.1:7000 flags FIN,SYN,RST,PSH,ACK,URG"
        );
        assert_eq!(
            frame_line(v4, &step("tcp:7000")),
            "tcp 10.0.0.1:7000 flags none"
        );
        assert_eq!(
            frame_line(v6, &step("7000")),
            "tcp [fd00::1]:7000 flags SYN"
        );
        assert_eq!(frame_line(v6, &step("udp:53")), "udp [fd00::1]:53");
    }

    #[test]
    fn genkey_takes_a_file_and_nothing_else() {
        for args in [
            &["-K", "k.key"][..],
            &["--genkey", "k.key"],
            &["--genkey=k.key"],
        ] {
            assert_eq!(
                parse_args(args),
                Ok(Command::GenKey(PathBuf::from("k.key"))),
                "{args:?}"
            );
        }
        for args in [
            &["-K", "k.key", "host"][..],
            &["-K", "k.key", "-v"],
            &["-K", "k.key", "-c", "knock.conf", "-e", "SSH"],
            &["-K", ""],
        ] {
            assert_eq!(
                usage_error(args),
                "-K takes a FILE and nothing else",
                "{args:?}"
            );
        }
        assert!(usage_error(&["-K"]).contains("K"));
    }

    #[test]
    fn parses_a_full_command_line() {
        let o = knock(&[
            "-v",
            "-6",
            "-d",
            "250",
            "host.example",
            "udp:1",
            "tcp:2:up",
            "3",
        ]);
        assert_eq!(o.host, "host.example");
        assert!(o.verbose);
        assert_eq!(o.family, Some(Family::V6));
        assert_eq!(o.delay, Duration::from_millis(250));
        let frame = |text: &str, spelled: &str| Frame {
            text: text.into(),
            step: step(spelled),
        };
        assert_eq!(
            o.sequence,
            Sequence::Steps(vec![
                frame("udp:1", "udp:1"),
                frame("tcp:2:up", "tcp:2:pu"),
                frame("3", "3:tcp")
            ])
        );
        let o = knock(&["h", "1"]);
        assert_eq!((o.delay, o.family, o.verbose), (DEFAULT_DELAY, None, false));
        let o = knock(&["--delay=0", "-4", "h", "1"]);
        assert_eq!((o.delay, o.family), (Duration::ZERO, Some(Family::V4)));
        let o = knock(&["-c", "/etc/knock.conf", "-e", "SSH", "server"]);
        assert_eq!(
            o.sequence,
            Sequence::Event {
                file: "/etc/knock.conf".into(),
                name: "SSH".into(),
                clock_offset: 0,
            }
        );
        assert_eq!(parse_args(&["-h", "x"]), Ok(Command::Help));
        assert_eq!(parse_args(&["-V"]), Ok(Command::Version));
        assert_eq!(parse_args(&["--help"]), Ok(Command::Help));
        assert_eq!(parse_args(&["--version"]), Ok(Command::Version));
    }

    #[test]
    fn knocks_u_makes_bare_ports_udp_and_leaves_spelled_protocols_alone() {
        let udp = |port| Step {
            proto: Proto::Udp,
            port,
            flags: FlagSpec::Any,
        };
        for args in [
            &["-u", "h", "7000", "7001:tcp", "7002:udp", "tcp:7003:fs"][..],
            &["--udp", "h", "7000", "7001:tcp", "7002:udp", "tcp:7003:fs"][..],
        ] {
            let Sequence::Steps(frames) = knock(args).sequence else {
                panic!("{args:?}")
            };
            let steps: Vec<Step> = frames.into_iter().map(|f| f.step).collect();
            assert_eq!(
                steps,
                [udp(7000), step("7001:tcp"), udp(7002), step("tcp:7003:fs")],
                "{args:?}"
            );
        }
        // Without -u a bare port stays a SYN.
        let Sequence::Steps(frames) = knock(&["h", "7000"]).sequence else {
            panic!()
        };
        assert_eq!(frames[0].step, step("7000:tcp"));
    }

    #[test]
    fn bad_command_lines_are_usage_errors() {
        for (args, needle) in [
            (&[][..], "missing HOST"),
            (&["host"][..], "missing STEP"),
            (&["", "1"][..], "HOST is empty"),
            (&["-4", "-6", "h", "1"][..], "exclude each other"),
            (&["-d", "x", "h", "1"][..], "-d wants milliseconds"),
            (&["-d", "-5", "h", "1"][..], "-d wants milliseconds"),
            (&["-d", "+5", "h", "1"][..], "-d wants milliseconds"),
            (&["-d", "60001", "h", "1"][..], "-d wants milliseconds"),
            (&["-d"][..], "Argument to option 'd' missing"),
            (&["-d", "1", "-d", "2", "h", "1"][..], "more than once"),
            (&["-q", "h", "1"][..], "Unrecognized option"),
            (&["-c", "f", "h"][..], "-c needs -e"),
            (&["-e", "E", "h"][..], "-e needs -c"),
            (&["-c", "f", "-e", "E", "h", "1"][..], "give only HOST"),
            (
                &["-u", "-c", "f", "-e", "E", "h"][..],
                "-u applies to PORT steps",
            ),
            (&["-c", "f", "-e", "E"][..], "missing HOST"),
            (&["h", "tcp:1:zz"][..], "unknown flag"),
            (&["h", "1", "99999"][..], "port must be"),
        ] {
            let msg = usage_error(args);
            assert!(msg.contains(needle), "{args:?}: {msg}");
        }
    }

    #[test]
    fn resolves_literals_by_family() {
        let v4: IpAddr = "127.0.0.1".parse().unwrap();
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(resolve("127.0.0.1", None), Ok(v4));
        assert_eq!(resolve("::1", Some(Family::V6)), Ok(v6));
        assert_eq!(resolve("[::1]", None), Ok(v6));
        assert!(resolve("::1", Some(Family::V4))
            .unwrap_err()
            .0
            .contains("no IPv4 address"));
        assert!(resolve("127.0.0.1", Some(Family::V6))
            .unwrap_err()
            .0
            .contains("no IPv6 address"));
    }

    #[test]
    fn missing_config_file_is_named() {
        let e = event_steps(Path::new("/nonexistent/knock.conf"), "SSH", 0).unwrap_err();
        assert!(e.0.starts_with("/nonexistent/knock.conf: "), "{e}");
    }

    #[test]
    fn print_and_clock_offset_options() {
        let event = |offset| Sequence::Event {
            file: "k.conf".into(),
            name: "R".into(),
            clock_offset: offset,
        };
        assert_eq!(
            parse_args(&["-p", "-c", "k.conf", "-e", "R"]),
            Ok(Command::Print {
                sequence: event(0),
                verbose: false
            })
        );
        for args in [
            &["--print", "-v", "-o", "-30", "-c", "k.conf", "-e", "R"][..],
            &["-pv", "--clock-offset=-30", "--config=k.conf", "--event=R"],
            &[
                "-p",
                "-v",
                "--clock-offset",
                "-30",
                "-c",
                "k.conf",
                "-e",
                "R",
            ],
        ] {
            assert_eq!(
                parse_args(args),
                Ok(Command::Print {
                    sequence: event(-30),
                    verbose: true
                }),
                "{args:?}"
            );
        }
        let o = knock(&["-o", "60", "-c", "k.conf", "-e", "R", "host"]);
        assert_eq!(o.sequence, event(60));
        let max = MAX_CLOCK_OFFSET.to_string();
        assert_eq!(knock(&["-o", &max, "-c", "f", "-e", "R", "h"]).sequence, {
            Sequence::Event {
                file: "f".into(),
                name: "R".into(),
                clock_offset: MAX_CLOCK_OFFSET,
            }
        });
        for (args, needle) in [
            (
                &["-p", "h"][..],
                "-p prints an event's sequence: give -c FILE -e EVENT",
            ),
            (
                &["-p", "-c", "f", "-e", "R", "host"][..],
                "give no HOST or STEP, not 'host'",
            ),
            (
                &["-p", "-4", "-c", "f", "-e", "R"][..],
                "-4 has no meaning with -p",
            ),
            (
                &["-p", "-d", "5", "-c", "f", "-e", "R"][..],
                "-d has no meaning with -p",
            ),
            (&["-o", "30", "h", "1"][..], "give it with -c FILE -e EVENT"),
            (
                &["-o", "x", "-c", "f", "-e", "R", "h"][..],
                "-o wants whole seconds",
            ),
            (
                &["-o", "+5", "-c", "f", "-e", "R", "h"][..],
                "-o wants whole seconds",
            ),
            (
                &["-o", "-", "-c", "f", "-e", "R", "h"][..],
                "-o wants whole seconds",
            ),
            (
                &["-o", "", "-c", "f", "-e", "R", "h"][..],
                "-o wants whole seconds",
            ),
            (
                &["-o", "315360001", "-c", "f", "-e", "R", "h"][..],
                "-o wants whole seconds",
            ),
            (&["-K", "k", "-p"][..], "-K takes a FILE and nothing else"),
            (
                &["-K", "k", "-o", "1"][..],
                "-K takes a FILE and nothing else",
            ),
        ] {
            let msg = usage_error(args);
            assert!(msg.contains(needle), "{args:?}: {msg}");
        }
    }

    /// A rotating event's sequence is the current window's, from the key
    /// file beside the config; -o moves the window; the key file's rules
    /// are the daemon's.
    #[test]
    fn a_rotating_event_gives_the_current_windows_sequence() {
        use crate::testutil::Scratch;
        use std::os::unix::fs::PermissionsExt;
        let dir = Scratch::new("client-rot");
        let conf = dir.file(
            "knock.conf",
            "<R>\nsequence = tcp:40000-40999:{s,fs} udp:50000-50999\nkey_file = r.key\n\
             window = 30\ntimeout = 5\nstart_command = x\n</R>\n\
             <F>\nsequence = udp:1 udp:2\ntimeout = 5\nstart_command = x\n</F>\n",
            0o644,
        );
        let key = dir.file("r.key", "000102030405060708090a0b0c0d0e0f\n", 0o600);
        let config = config::parse(&std::fs::read(&conf).unwrap(), "k").unwrap();
        let mut rotation = config.events[0].rotation.clone().unwrap();
        rotation.load_key(&conf).unwrap();
        for offset in [0i64, -30, 30, -3600] {
            // Retried once should the window turn in between.
            let got = (0..2)
                .find_map(|_| {
                    let before = rotation.window.index(unix_now(offset));
                    let (steps, now) = event_sequence(&conf, "R", offset).unwrap();
                    let now = now.unwrap();
                    let w = rotation.window.index(now.unix_secs);
                    (w == before).then_some((steps, w, now))
                })
                .unwrap();
            assert_eq!(
                got.0,
                rotation.sequence("R", got.1).unwrap(),
                "offset {offset}"
            );
            assert!(got
                .2
                .describe()
                .starts_with(&format!("window {} (30 s), ", got.1)));
        }
        let now = rotation.window.index(unix_now(0));
        let shifted = rotation.window.index(
            event_sequence(&conf, "R", -60)
                .unwrap()
                .1
                .unwrap()
                .unix_secs,
        );
        assert!((now - 3..=now - 1).contains(&shifted), "{now} {shifted}");
        // Fixed events print as they are; -o makes no sense for them.
        assert_eq!(
            event_sequence(&conf, "F", 0).unwrap(),
            (steps_of("udp:1 udp:2"), None)
        );
        let e = event_steps(&conf, "F", 5).unwrap_err();
        assert!(
            e.0.contains("has a fixed sequence (no key_file): -o applies to rotating events only"),
            "{e}"
        );
        // An open key file is refused, without a byte of it.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = event_steps(&conf, "R", 0).unwrap_err();
        assert!(
            e.0.contains("event 'R': key_file: ") && e.0.contains("fix: chmod 600"),
            "{e}"
        );
        assert!(!e.0.contains("0001020304"));
        std::fs::remove_file(&key).unwrap();
        let e = event_steps(&conf, "R", 0).unwrap_err();
        assert!(e.0.contains("tportknock --genkey"), "{e}");
    }

    fn steps_of(text: &str) -> Vec<Step> {
        text.split_whitespace().map(step).collect()
    }
}

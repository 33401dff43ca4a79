//! knock.conf: the original tportknockd `<EVENT>` … `</EVENT>` language.
//!
//! ```text
//! <SSH>
//!  sequence      = udp:1234 tcp:543 tcp:543:i tcp:123:frap
//!  timeout       = 10
//!  start_command = /usr/sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT
//!  stop_command  = /usr/sbin/iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT
//!  command_delay = 30
//! </SSH>
//! ```
//!
//! knockd's `[section]` format is read by [`knockd`] into the same types;
//! [`parse`] tells the two apart.
//!
//! The file is read by root and its commands run as root, so the parser
//! trusts nothing: every problem is collected as `FILE:LINE: message`, echoed
//! text is clipped and escaped, and no input can make it panic.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::net::IpAddr;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::knock::rotate::{WindowLen, LIVE_WINDOWS, MAX_WINDOW, MIN_WINDOW};
use crate::knock::template::{Template, MAX_TEMPLATE_TEXT};
use crate::knock::{FlagSpec, Step};

pub mod check;
pub mod knockd;
pub mod onetime;
pub mod rotation;
pub mod sets;

/// One `<NAME>` block (or knockd `[name]` section).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    /// The tag's or section's name, unique in the file: it names the event
    /// in logs, `-S` and `tportknock -e`, and a rotating event's sequences are
    /// derived from it (renaming one changes them).
    pub name: String,
    /// Line of the opening tag, for messages.
    pub line: usize,
    /// Empty for a rotating event (see `rotation`), and for a one-time
    /// event whose file has no unused line left: such an event is disabled.
    pub sequence: Vec<Step>,
    /// Seconds, at least 1; the whole sequence must arrive within it,
    /// counted from its first frame.
    pub timeout: u32,
    /// Empty: nothing runs for IPv4 knockers (a knockd IPv6-only door).
    pub start_command: String,
    /// Runs `command_delay` seconds after the start to close the door;
    /// `None`: only a kernel set's timeout (or nothing) closes it.
    pub stop_command: Option<String>,
    /// Seconds after completion that `stop_command` runs.
    pub command_delay: Option<u32>,
    /// For IPv6 knockers: `None` runs `start_command`, `Some("")` nothing.
    pub start_command_6: Option<String>,
    /// For IPv6 knockers: `None` runs `stop_command`, `Some("")` nothing.
    pub stop_command_6: Option<String>,
    /// knockd's `TCPFlags`: a TCP frame whose flags this does not accept is
    /// ignored by the event (it neither advances nor resets an attempt).
    /// `None` (knock.conf): such a frame is a wrong frame like any other.
    pub tcp_gate: Option<FlagSpec>,
    /// knockd's `Target`: the event matches frames sent to this address,
    /// and only those, instead of frames to the own addresses.
    pub target: Option<IpAddr>,
    /// knockd's `One_Time_Sequences`: `sequence` is this file's first
    /// unused line, and each use marks that line used.
    pub one_time: Option<PathBuf>,
    /// Kernel doors: sets the knocker's address goes into, for
    /// `command_delay` seconds (`nft_set`, `nft_set_6`, `ipset`, `ipset_6`).
    pub sets: sets::DoorSets,
    /// knock.conf's `max_doors`: doors of this event open at once; past it
    /// a completed knock is logged and refused. `None`: only the daemon's
    /// caps (`-n`, `-N`) apply.
    pub max_doors: Option<u32>,
    /// knock.conf's `key_file` and `window`: the sequence changes every
    /// window, drawn from these templates with the key.
    pub rotation: Option<rotation::Rotation>,
}

/// Why the log keeps an event's steps to itself (see [`Event::withheld`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withheld {
    /// A rotating event: its live windows' sequences.
    Rotating,
    /// A one-time event: its file's next unused line.
    OneTime,
}

impl fmt::Display for Withheld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Withheld::Rotating => "rotating",
            Withheld::OneTime => "one-time",
        })
    }
}

impl Event {
    /// `Some` when log lines must name neither this event's steps nor the
    /// frames that hit or broke them: a rotating window's sequence and a
    /// one-time event's next line open the door for whoever learns them
    /// until they are spent, and the log is read by more people than the
    /// 0600 config (journald: the `adm` group). `None` for a fixed
    /// sequence, which `-d` names for troubleshooting (the man page says to
    /// keep such a log as private as the config).
    pub fn withheld(&self) -> Option<Withheld> {
        if self.rotation.is_some() {
            Some(Withheld::Rotating)
        } else if self.one_time.is_some() {
            Some(Withheld::OneTime)
        } else {
            None
        }
    }

    /// Frames in a knock: the templates of a rotating event (whose
    /// `sequence` is empty), else the sequence's steps (0 for a disabled
    /// one-time event).
    pub fn step_count(&self) -> usize {
        match &self.rotation {
            Some(r) => r.templates.len(),
            None => self.sequence.len(),
        }
    }

    /// The start command for a knocker at `ip`, unexpanded; `None` when
    /// nothing is to run for its address family.
    pub fn start_for(&self, ip: IpAddr) -> Option<&str> {
        let cmd = match (ip, &self.start_command_6) {
            (IpAddr::V6(_), Some(cmd6)) => cmd6,
            _ => &self.start_command,
        };
        (!cmd.is_empty()).then_some(cmd.as_str())
    }

    /// The stop command for a knocker at `ip`, unexpanded; `None` when
    /// nothing is to run.
    pub fn stop_for(&self, ip: IpAddr) -> Option<&str> {
        let cmd = match (ip, &self.stop_command_6) {
            (IpAddr::V6(_), Some(cmd6)) => Some(cmd6),
            _ => self.stop_command.as_ref(),
        }?;
        (!cmd.is_empty()).then_some(cmd.as_str())
    }
}

/// The file format a config was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// tportknockd's `<NAME>` blocks.
    #[default]
    KnockConf,
    /// knockd's `[name]` sections.
    Knockd,
}

/// knockd's `[options]`; the command line overrides each.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GlobalOptions {
    /// knockd's `UseSyslog`: log to syslog as well as to stderr.
    pub use_syslog: bool,
    /// knockd's `LogFile` (absolute): also append every log line to it.
    pub log_file: Option<PathBuf>,
    /// knockd's `PidFile` (absolute); `-p` overrides it.
    pub pid_file: Option<PathBuf>,
    /// knockd's `Interface`, checked to look like a name; `-i` overrides it.
    pub interface: Option<String>,
}

/// A whole, valid configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    /// In file order, which is the order of event indices in the matcher,
    /// its traces and the stats line.
    pub events: Vec<Event>,
    /// Which language the file was written in.
    pub format: Format,
    /// knockd's `[options]`; all unset for a knock.conf.
    pub options: GlobalOptions,
    /// Problems `load` found in one-time files: lines skipped, events
    /// disabled for want of a sequence.
    pub warnings: Vec<String>,
}

/// Every problem found in a file, each as `FILE:LINE: message` (or
/// `FILE: message` when no line applies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// At least one, in file order.
    pub messages: Vec<String>,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.messages.join("\n"))
    }
}

impl std::error::Error for LoadError {}

/// Longest `timeout`: a sequence spread over more than a day is no knock.
pub const MAX_TIMEOUT: u32 = 86_400;
/// Longest `command_delay`: 31 days.
pub const MAX_COMMAND_DELAY: u32 = 31 * 86_400;
/// Largest `max_doors`.
pub const MAX_DOORS: u32 = 1 << 20;
/// Longest non-comment line; far above any sane command, far below what
/// would make echoing or storing it a burden.
pub const MAX_LINE: usize = 64 * 1024;
/// Longest event name; names end up in every log line about the event.
pub const MAX_NAME: usize = 64;
/// Largest file `load` reads.
pub const MAX_FILE: u64 = 16 * 1024 * 1024;
/// Most steps all events together may have (events × steps). Each frame
/// to a port reaches only the events with a step there, but a file could
/// put every step on one port: this bounds a frame's work and the
/// matcher's tables whatever the file holds.
pub const MAX_TOTAL_STEPS: usize = 65_536;
/// The longest frame text handed to the parser, whose message would echo
/// all of it: a step template with a port range and a full set of flag
/// combinations (`tcp:65535:fsrpau` alone is 16 bytes).
const MAX_FRAME_TEXT: usize = MAX_TEMPLATE_TEXT;
/// How much of a piece of text a message echoes.
const MAX_ECHO: usize = 60;
/// Bad frames reported per `sequence` line before the rest are only counted.
const MAX_FRAME_ERRORS: usize = 8;

/// Replaces every `%IP%` in `command` by the knocker's address. The address
/// is printed with `Display`, so it only holds digits, hex letters, `.` and
/// `:`, nothing a shell would interpret.
pub fn expand(command: &str, ip: IpAddr) -> String {
    let ip = ip.to_string();
    let mut out = String::with_capacity(command.len());
    let mut rest = command;
    while let Some(at) = find(rest, IP_MARK) {
        out.push_str(&rest[..at]);
        out.push_str(&ip);
        rest = &rest[at + IP_MARK.len()..];
    }
    out.push_str(rest);
    out
}

/// What [`expand`] replaces.
const IP_MARK: &str = "%IP%";

/// Where `needle` (not empty) first occurs in `hay`. A plain scan: the
/// standard `str::find`/`replace`/`contains` with a `&str` pattern link
/// the Two-Way searcher (about 5 KB) for a few short commands.
pub(crate) fn find(hay: &str, needle: &str) -> Option<usize> {
    debug_assert!(!needle.is_empty());
    hay.as_bytes()
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
}

/// The text after a UTF-8 byte order mark, which Windows editors like to
/// put at the start of a file.
pub(crate) fn strip_bom(text: &[u8]) -> &[u8] {
    text.strip_prefix(b"\xef\xbb\xbf").unwrap_or(text)
}

/// Parses a file's bytes; `file` names it in messages. Does not look at
/// ownership or permissions (the client uses this to read sequences).
///
/// The format is detected from the file: one whose first meaningful line is
/// a `[section]` header is knockd's, anything else knock.conf. A one-time
/// event's sequence is left empty here; `load` reads its file.
pub fn parse(text: &[u8], file: &str) -> Result<Config, LoadError> {
    let config = match detect(text) {
        Format::KnockConf => parse_knock_conf(text, file),
        Format::Knockd => knockd::parse(text, file),
    }?;
    check_size(&config, file)?;
    Ok(config)
}

/// Refuses a configuration with more than [`MAX_TOTAL_STEPS`] steps.
fn check_size(config: &Config, file: &str) -> Result<(), LoadError> {
    let steps: usize = config.events.iter().map(matcher_steps).sum();
    if steps <= MAX_TOTAL_STEPS {
        return Ok(());
    }
    Err(LoadError {
        messages: vec![format!(
            "{file}: {} events with {steps} steps in all; at most {MAX_TOTAL_STEPS} steps \
             (events × steps) are allowed: split the events over several daemons or \
             shorten the sequences",
            config.events.len()
        )],
    })
}

/// Steps an event puts into the matchers: a rotating event holds the live
/// windows' sequences and one that just left them.
fn matcher_steps(event: &Event) -> usize {
    match &event.rotation {
        Some(r) => r.templates.len() * (LIVE_WINDOWS as usize + 1),
        None => event.sequence.len(),
    }
}

/// Reads `path` under the loader's limits (a regular file, at most
/// [`MAX_FILE`] bytes, no waiting on a FIFO or device), with the loader's
/// messages, but without its ownership rules: for `tportknock -c`, which
/// runs nothing from the file.
pub fn read_limited(path: &Path) -> Result<Vec<u8>, LoadError> {
    open_checked(path, false, false).map(|(_, bytes)| bytes)
}

/// knockd's format if the first line that is not blank or a comment starts
/// with `[`: knock.conf never has such a line.
pub fn detect(text: &[u8]) -> Format {
    let text = strip_bom(text);
    for line in text.split(|&b| b == b'\n') {
        match line.iter().find(|b| !b.is_ascii_whitespace()) {
            None | Some(b'#') => continue,
            Some(b'[') => return Format::Knockd,
            Some(_) => return Format::KnockConf,
        }
    }
    Format::KnockConf
}

/// Reads and parses `path` for the daemon: refuses a file that group or
/// others can write, or owned by someone other than root or the running user.
/// The one-time sequence files a knockd config names are read (under the
/// same rules) to fill in their events' sequences, and the key files of
/// rotating events under theirs ([`crate::crypto::keyfile`]: no access for
/// group or others at all).
pub fn load(path: &Path) -> Result<Config, LoadError> {
    let name = path.display().to_string();
    let (_, bytes) = open_private(path, false)?;
    let mut config = parse(&bytes, &name)?;
    let mut messages = Vec::new();
    for event in config.events.iter_mut() {
        if let Some(rotation) = event.rotation.as_mut() {
            if let Err(e) = rotation.load_key(path) {
                messages.push(format!("{name}:{}: key_file: {e}", event.line));
            }
        }
        let Some(file) = &event.one_time else {
            continue;
        };
        let tcp = event.tcp_gate.unwrap_or(FlagSpec::Any);
        match onetime::read(file, tcp) {
            Err(e) => messages.push(format!("{name}:{}: One_Time_Sequences: {e}", event.line)),
            Ok(scan) => {
                config.warnings.extend(scan.skipped);
                match scan.active {
                    Some(active) => event.sequence = active.steps,
                    None => config.warnings.push(format!(
                        "{name}:{}: event {} is disabled: {} has no unused sequence left",
                        event.line,
                        event.name,
                        file.display()
                    )),
                }
            }
        }
    }
    if messages.is_empty() {
        // One-time files replaced sequences: count again.
        check_size(&config, &name)?;
        Ok(config)
    } else {
        Err(LoadError { messages })
    }
}

/// Opens `path` (read-only, or also for writing) after checking that it
/// is a regular file only root or the running user can change; returns it
/// with its bytes.
fn open_private(path: &Path, write: bool) -> Result<(std::fs::File, Vec<u8>), LoadError> {
    open_checked(path, write, true)
}

/// [`open_private`] with the ownership rules only when `private`.
fn open_checked(
    path: &Path,
    write: bool,
    private: bool,
) -> Result<(std::fs::File, Vec<u8>), LoadError> {
    let name = path.display().to_string();
    let fail = |msg: String| LoadError {
        messages: vec![format!("{name}: {msg}")],
    };
    // O_NONBLOCK: opening a FIFO must not hang the daemon; it is refused below.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| fail(format!("cannot open: {e}")))?;
    // Checks the opened file itself, so a rename after the check changes nothing.
    let meta = file
        .metadata()
        .map_err(|e| fail(format!("cannot stat: {e}")))?;
    if !meta.is_file() {
        return Err(fail("not a regular file".into()));
    }
    let refusals = if private {
        ownership_problems(&meta, crate::sys::daemon::euid(), &name)
    } else {
        Vec::new()
    };
    if !refusals.is_empty() {
        return Err(LoadError { messages: refusals });
    }
    let mut bytes = Vec::new();
    (&file)
        .take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(fail(format!(
            "larger than {} MiB; that is no knock.conf",
            MAX_FILE >> 20
        )));
    }
    Ok((file, bytes))
}

/// Why a config with these owner and mode bits must not be trusted.
fn ownership_problems(meta: &std::fs::Metadata, euid: u32, name: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        problems.push(format!(
            "{name}: refusing to load: group or others can write it (mode {mode:04o}), \
             and its commands run with tportknockd's rights (usually root); \
             fix: chmod go-w {name}"
        ));
    }
    let uid = meta.uid();
    if uid != 0 && uid != euid {
        problems.push(format!(
            "{name}: refusing to load: it is owned by uid {uid}, not by root or by \
             uid {euid} who runs tportknockd, and its commands run with tportknockd's \
             rights (usually root); fix: chown root {name}"
        ));
    }
    problems
}

/// The keys of a block, in the order messages list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Sequence,
    Timeout,
    StartCommand,
    StopCommand,
    CommandDelay,
    StartCommand6,
    StopCommand6,
    NftSet,
    NftSet6,
    Ipset,
    Ipset6,
    MaxDoors,
    SecretFile,
    Window,
}

impl Key {
    const ALL: [Key; 14] = [
        Key::Sequence,
        Key::Timeout,
        Key::StartCommand,
        Key::StopCommand,
        Key::CommandDelay,
        Key::StartCommand6,
        Key::StopCommand6,
        Key::NftSet,
        Key::NftSet6,
        Key::Ipset,
        Key::Ipset6,
        Key::MaxDoors,
        Key::SecretFile,
        Key::Window,
    ];
    const KNOWN: &'static str = "sequence, timeout, start_command, stop_command, command_delay, \
         start_command_6, stop_command_6, nft_set, nft_set_6, ipset, ipset_6, max_doors, \
         key_file, window";

    fn name(self) -> &'static str {
        match self {
            Key::Sequence => "sequence",
            Key::Timeout => "timeout",
            Key::StartCommand => "start_command",
            Key::StopCommand => "stop_command",
            Key::CommandDelay => "command_delay",
            Key::StartCommand6 => "start_command_6",
            Key::StopCommand6 => "stop_command_6",
            Key::NftSet => "nft_set",
            Key::NftSet6 => "nft_set_6",
            Key::Ipset => "ipset",
            Key::Ipset6 => "ipset_6",
            Key::MaxDoors => "max_doors",
            Key::SecretFile => "key_file",
            Key::Window => "window",
        }
    }

    fn from_name(text: &str) -> Option<Key> {
        Key::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(text))
    }
}

/// Collects `FILE:LINE: message`s.
struct Diag<'a> {
    file: &'a str,
    messages: Vec<String>,
}

impl Diag<'_> {
    fn at(&mut self, line: usize, msg: impl fmt::Display) {
        self.messages.push(format!("{}:{line}: {msg}", self.file));
    }
}

/// Escapes `text` and cuts it to `MAX_ECHO` characters, for messages.
fn clip(text: &str) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == MAX_ECHO {
            out.push('…');
            break;
        }
        out.extend(c.escape_debug());
    }
    out
}

/// A block being read.
struct Block {
    name: String,
    line: usize,
    /// Bad name or duplicate: checked, but never becomes an event.
    discard: bool,
    /// A line of it could not be understood at all (not text, no `=`,
    /// unknown key), so "missing key" complaints could be wrong: skip them.
    damaged: bool,
    /// Line where each key (indexed by `Key as usize`) first appeared, even if
    /// its value was bad.
    seen: [Option<usize>; Key::ALL.len()],
    /// Templates: plain frames are one-choice templates, and become steps
    /// unless the event is rotating.
    sequence: Option<Vec<Template>>,
    timeout: Option<u32>,
    start_command: Option<String>,
    stop_command: Option<String>,
    command_delay: Option<u32>,
    start_command_6: Option<String>,
    stop_command_6: Option<String>,
    sets: sets::DoorSets,
    max_doors: Option<u32>,
    key_file: Option<PathBuf>,
    window: Option<WindowLen>,
}

impl Block {
    fn new(name: &str, line: usize, discard: bool) -> Block {
        Block {
            name: name.to_string(),
            line,
            discard,
            damaged: false,
            seen: [None; Key::ALL.len()],
            sequence: None,
            timeout: None,
            start_command: None,
            stop_command: None,
            command_delay: None,
            start_command_6: None,
            stop_command_6: None,
            sets: sets::DoorSets::default(),
            max_doors: None,
            key_file: None,
            window: None,
        }
    }

    fn seen(&self, key: Key) -> Option<usize> {
        self.seen.get(key as usize).copied().flatten()
    }

    fn mark_seen(&mut self, key: Key, line: usize) {
        if let Some(slot) = self.seen.get_mut(key as usize) {
            *slot = Some(line);
        }
    }

    /// Reads one `key = value` line.
    fn key_value(&mut self, line: &str, n: usize, diag: &mut Diag<'_>) {
        let Some((key_text, value)) = line.split_once('=') else {
            self.damaged = true;
            diag.at(n, format!("expected 'key = value', got '{}'", clip(line)));
            return;
        };
        let (key_text, value) = (key_text.trim(), value.trim());
        let Some(key) = Key::from_name(key_text) else {
            self.damaged = true;
            diag.at(
                n,
                format!(
                    "unknown key '{}' (known keys: {})",
                    clip(key_text),
                    Key::KNOWN
                ),
            );
            return;
        };
        if let Some(first) = self.seen(key) {
            diag.at(
                n,
                format!(
                    "{} given twice in <{}> (first at line {first})",
                    key.name(),
                    clip(&self.name)
                ),
            );
            return;
        }
        self.mark_seen(key, n);
        // An empty IPv6 command is knockd's way to say: nothing for IPv6.
        if value.is_empty() && !matches!(key, Key::StartCommand6 | Key::StopCommand6) {
            diag.at(n, format!("{} has no value", key.name()));
            return;
        }
        match key {
            Key::Sequence => self.sequence = parse_sequence(value, n, diag),
            Key::Timeout => {
                self.timeout = parse_seconds(key, value, MAX_TIMEOUT, "one day", n, diag)
            }
            Key::CommandDelay => {
                self.command_delay =
                    parse_seconds(key, value, MAX_COMMAND_DELAY, "31 days", n, diag)
            }
            Key::StartCommand => self.start_command = Some(value.to_string()),
            Key::StopCommand => self.stop_command = Some(value.to_string()),
            Key::StartCommand6 => self.start_command_6 = Some(value.to_string()),
            Key::StopCommand6 => self.stop_command_6 = Some(value.to_string()),
            Key::NftSet | Key::NftSet6 => match sets::NftSet::parse(value) {
                Ok(set) if key == Key::NftSet => self.sets.nft = Some(set),
                Ok(set) => self.sets.nft_6 = Some(set),
                Err(e) => diag.at(n, format!("{}: {e}", key.name())),
            },
            Key::Ipset | Key::Ipset6 => match sets::IpsetName::parse(value) {
                Ok(set) if key == Key::Ipset => self.sets.ipset = Some(set),
                Ok(set) => self.sets.ipset_6 = Some(set),
                Err(e) => diag.at(n, format!("{}: {e}", key.name())),
            },
            Key::MaxDoors => self.max_doors = parse_count(key, value, MAX_DOORS, n, diag),
            Key::SecretFile => self.key_file = Some(PathBuf::from(value)),
            Key::Window => self.window = parse_window(value, n, diag),
        }
    }

    /// The errors of an event without `key_file` that uses what only
    /// rotating events have: `window`, port ranges or flag sets.
    fn rotation_keys_missing(&self, diag: &mut Diag<'_>) {
        if let Some(line) = self.seen(Key::Window) {
            diag.at(
                line,
                "window without key_file: only a rotating event has windows; add key_file \
                 (see ROTATING SEQUENCES in knock.conf(5)) or remove window",
            );
        }
        let (Some(templates), Some(line)) = (&self.sequence, self.seen(Key::Sequence)) else {
            return;
        };
        let mut drawn = templates.iter().filter(|t| t.choices() > 1);
        if let Some(first) = drawn.next() {
            let more = drawn.count();
            let others = match more {
                0 => String::new(),
                1 => " and 1 more".into(),
                n => format!(" and {n} more"),
            };
            diag.at(
                line,
                format!(
                    "sequence: frame '{first}'{others} draw from a port range or a set of flag \
                     combinations, which only a rotating event can: add key_file (a key made \
                     by tportknock -K FILE; see ROTATING SEQUENCES in knock.conf(5)), or give \
                     single ports and flags"
                ),
            );
        }
    }

    /// Checks the block as a whole at its closing tag; an event if all is well.
    fn finish(self, diag: &mut Diag<'_>) -> Option<Event> {
        // A kernel door is a door by itself: with a set named, a start
        // command is optional and command_delay is its timeout.
        let set_line = [Key::NftSet, Key::NftSet6, Key::Ipset, Key::Ipset6]
            .into_iter()
            .find_map(|k| self.seen(k).map(|line| (line, k)));
        if !self.damaged {
            let required: &[Key] = match set_line {
                Some(_) => &[Key::Sequence, Key::Timeout],
                None => &[Key::Sequence, Key::Timeout, Key::StartCommand],
            };
            for &key in required {
                if self.seen(key).is_none() {
                    diag.at(
                        self.line,
                        format!(
                            "event <{}> has no {}; sequence, timeout and start_command are required",
                            clip(&self.name),
                            key.name()
                        ),
                    );
                }
            }
            let stop6 = self
                .seen(Key::StopCommand6)
                .filter(|_| self.stop_command_6.as_ref().is_some_and(|c| !c.is_empty()));
            let stop = self
                .seen(Key::StopCommand)
                .map(|line| (line, Key::StopCommand))
                .or(stop6.map(|line| (line, Key::StopCommand6)));
            match (stop, self.seen(Key::CommandDelay)) {
                (Some((line, key)), None) => diag.at(
                    line,
                    format!(
                        "{} needs command_delay (the seconds to wait before running it)",
                        key.name()
                    ),
                ),
                (None, Some(delay)) if set_line.is_none() => diag.at(
                    delay,
                    "command_delay without stop_command: there is nothing to run after the delay",
                ),
                _ => {}
            }
            match (set_line, self.command_delay) {
                (Some((line, key)), None) if self.seen(Key::CommandDelay).is_none() => diag.at(
                    line,
                    format!(
                        "{} needs command_delay (the seconds the address stays in the set)",
                        key.name()
                    ),
                ),
                (Some(_), Some(delay)) => {
                    if let Some(problem) = self.sets.delay_problem(delay) {
                        diag.at(self.seen(Key::CommandDelay).unwrap_or(self.line), problem);
                    }
                }
                _ => {}
            }
            if let Some(line) = self.seen(Key::StartCommand6) {
                let start6 = self.start_command_6.as_deref().unwrap_or("");
                let stop = self.stop_command.as_deref().unwrap_or("");
                if let Some(msg) = ipv6_stop_missing(
                    "start_command_6",
                    "stop_command_6",
                    start6,
                    stop,
                    self.stop_command_6.is_some(),
                ) {
                    diag.at(line, msg);
                }
            }
        }
        let rotating = self.seen(Key::SecretFile).is_some();
        let window_seen = self.seen(Key::Window).is_some();
        if !rotating {
            self.rotation_keys_missing(diag);
        }
        if self.discard {
            return None;
        }
        let stop6 = self.stop_command_6.as_ref().is_some_and(|c| !c.is_empty());
        if self.seen(Key::StartCommand6).is_some()
            && ipv6_stop_missing(
                "",
                "",
                self.start_command_6.as_deref().unwrap_or(""),
                self.stop_command.as_deref().unwrap_or(""),
                self.stop_command_6.is_some(),
            )
            .is_some()
        {
            return None;
        }
        let stop_given = self.seen(Key::StopCommand).is_some()
            || self.seen(Key::CommandDelay).is_some()
            || stop6;
        let has_sets = !self.sets.is_empty();
        if set_line.is_some() && (!has_sets || self.command_delay.is_none()) {
            return None;
        }
        if has_sets
            && self
                .command_delay
                .is_some_and(|d| self.sets.delay_problem(d).is_some())
        {
            return None;
        }
        let stop_pair = match (self.stop_command, self.command_delay) {
            (stop, Some(delay)) if stop.is_some() || stop6 || has_sets => (stop, Some(delay)),
            (None, None) if !stop_given => (None, None),
            _ => return None,
        };
        let templates = self.sequence?;
        let (sequence, rotation) = if rotating {
            if window_seen && self.window.is_none() {
                return None;
            }
            let rotation = rotation::Rotation {
                templates,
                key_file: self.key_file?,
                window: self.window.unwrap_or_default(),
                key: None,
            };
            (Vec::new(), Some(rotation))
        } else {
            if window_seen || templates.iter().any(|t| t.choices() > 1) {
                return None;
            }
            (templates.iter().map(|t| t.step(0)).collect(), None)
        };
        Some(Event {
            name: self.name,
            line: self.line,
            sequence,
            rotation,
            timeout: self.timeout?,
            start_command: match self.start_command {
                Some(cmd) => cmd,
                None if has_sets => String::new(),
                None => return None,
            },
            stop_command: stop_pair.0,
            command_delay: stop_pair.1,
            start_command_6: self.start_command_6,
            stop_command_6: self.stop_command_6,
            sets: self.sets,
            max_doors: self.max_doors,
            ..Event::default()
        })
    }
}

/// The frames of a `sequence` line as templates: a plain frame is a
/// template with one choice, and the same parser judges both, in the plain
/// step parser's words. Whether ranges and sets are allowed (only with
/// `key_file`) is decided when the block is complete.
fn parse_sequence(value: &str, n: usize, diag: &mut Diag<'_>) -> Option<Vec<Template>> {
    let mut steps = Vec::new();
    let mut bad = 0usize;
    for frame in value.split_whitespace() {
        let problem = if frame.len() > MAX_FRAME_TEXT {
            format!(
                "frame '{}' is too long to be protocol:port[:flags]",
                clip(frame)
            )
        } else {
            match frame.parse::<Template>() {
                Ok(step) => {
                    steps.push(step);
                    continue;
                }
                Err(e) => e.to_string(),
            }
        };
        bad += 1;
        if bad <= MAX_FRAME_ERRORS {
            diag.at(n, format!("sequence: {problem}"));
        }
    }
    if bad > MAX_FRAME_ERRORS {
        diag.at(
            n,
            format!(
                "sequence: {} more bad frames on this line not shown",
                bad - MAX_FRAME_ERRORS
            ),
        );
    }
    (bad == 0).then_some(steps)
}

fn parse_seconds(
    key: Key,
    value: &str,
    max: u32,
    max_words: &str,
    n: usize,
    diag: &mut Diag<'_>,
) -> Option<u32> {
    if value.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(secs) = value.parse::<u32>() {
            if (1..=max).contains(&secs) {
                return Some(secs);
            }
        }
    }
    diag.at(
        n,
        format!(
            "{} must be whole seconds from 1 to {max} ({max_words}), not '{}'",
            key.name(),
            clip(value)
        ),
    );
    None
}

/// `window`: whole seconds from [`MIN_WINDOW`] to [`MAX_WINDOW`].
fn parse_window(value: &str, n: usize, diag: &mut Diag<'_>) -> Option<WindowLen> {
    let window = value
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| value.parse::<u32>().ok())
        .flatten()
        .and_then(WindowLen::new);
    if window.is_none() {
        diag.at(
            n,
            format!(
                "window must be whole seconds from {MIN_WINDOW} to {MAX_WINDOW}, not '{}'",
                clip(value)
            ),
        );
    }
    window
}

/// A count from 1 to `max`.
fn parse_count(key: Key, value: &str, max: u32, n: usize, diag: &mut Diag<'_>) -> Option<u32> {
    if value.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(count) = value.parse::<u32>() {
            if (1..=max).contains(&count) {
                return Some(count);
            }
        }
    }
    diag.at(
        n,
        format!(
            "{} must be a whole number from 1 to {max}, not '{}'",
            key.name(),
            clip(value)
        ),
    );
    None
}

/// An IPv6 start without an IPv6 stop, while the IPv4 event has a stop:
/// IPv6 knockers would get the IPv4 stop, which does not undo the IPv6
/// start (an ip6tables rule left by an iptables stop), so the door would
/// never close. The message names the fix; `None` when all is well.
pub(crate) fn ipv6_stop_missing(
    start6_key: &str,
    stop6_key: &str,
    start6: &str,
    stop: &str,
    stop6_given: bool,
) -> Option<String> {
    if start6.is_empty() || stop.is_empty() || stop6_given {
        return None;
    }
    Some(format!(
        "{start6_key} without {stop6_key}: IPv6 knockers would be closed by the IPv4 stop \
         command, which does not undo {start6_key}, so their door would stay open; \
         add {stop6_key} (the command that undoes {start6_key})"
    ))
}

/// The name between `<`/`</` and `>`, plus what is wrong with the tag (a
/// missing `>`, text after it). The name is a best guess even then, so that a
/// typo in a tag does not also garble the lines around it.
fn tag_name<'a>(rest: &'a str, whole: &str) -> (&'a str, Option<String>) {
    let Some((name, after)) = rest.split_once('>') else {
        return (
            rest.trim_end(),
            Some(format!("tag '{}' lacks its closing '>'", clip(whole))),
        );
    };
    if !after.trim().is_empty() {
        let msg = format!(
            "unexpected text '{}' after tag; a tag stands alone on its line",
            clip(after.trim())
        );
        return (name, Some(msg));
    }
    (name, None)
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("event name is empty".into());
    }
    if name.len() > MAX_NAME {
        return Err(format!(
            "event name is {} bytes long; at most {MAX_NAME} allowed",
            name.len()
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(format!(
            "event name '{}' may only contain letters, digits, '_', '-' and '.'",
            clip(name)
        ));
    }
    Ok(())
}

/// A line as text, or why it is not usable text.
fn text_line(raw: &[u8]) -> Result<&str, String> {
    if raw.len() > MAX_LINE {
        return Err(format!(
            "line is {} bytes long; at most {MAX_LINE} allowed",
            raw.len()
        ));
    }
    let line = std::str::from_utf8(raw).map_err(|e| {
        format!(
            "line is not text (invalid UTF-8 at byte {})",
            e.valid_up_to() + 1
        )
    })?;
    // NUL could never reach exec, and escapes or carriage returns in the
    // middle of a line would garble the logs that echo commands.
    if let Some(c) = line.chars().find(|c| c.is_control() && *c != '\t') {
        return Err(format!(
            "line contains control character U+{:04X}; only text and tabs are allowed",
            u32::from(c)
        ));
    }
    Ok(line)
}

/// The lines of both formats that say something, each with its 1-based
/// number and without the CR of a CRLF ending. Blank lines and comments are
/// skipped before any other check: whatever bytes a comment holds (an old
/// Latin-1 remark, a long ruler) do no harm.
fn content_lines(text: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    text.split(|&b| b == b'\n')
        .enumerate()
        .filter_map(|(idx, raw)| {
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            match raw.iter().find(|b| !matches!(b, b' ' | b'\t')) {
                None | Some(b'#') => None,
                Some(_) => Some((idx + 1, raw)),
            }
        })
}

/// The knock.conf reader behind `parse`.
fn parse_knock_conf(text: &[u8], file: &str) -> Result<Config, LoadError> {
    let text = strip_bom(text);
    let mut diag = Diag {
        file,
        messages: Vec::new(),
    };
    let mut events = Vec::new();
    // Lower-cased name → (name, line): `SSH` and `ssh` would be confused in
    // logs and by the client.
    // (Index into `firsts`, which holds the name as written and its line.)
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut firsts: Vec<(String, usize)> = Vec::new();
    let mut open: Option<Block> = None;
    let mut any_block = false;

    for (n, raw) in content_lines(text) {
        let line = match text_line(raw) {
            Ok(line) => line,
            Err(problem) => {
                diag.at(n, problem);
                if let Some(block) = open.as_mut() {
                    block.damaged = true;
                }
                continue;
            }
        };
        let line = line.trim();

        if let Some(rest) = line.strip_prefix("</") {
            let (name, problem) = tag_name(rest, line);
            if let Some(msg) = problem {
                diag.at(n, msg);
            }
            match open.take() {
                None => diag.at(
                    n,
                    format!("closing tag </{}> without an opening tag", clip(name)),
                ),
                Some(block) => {
                    if name != block.name {
                        diag.at(
                            n,
                            format!(
                                "closing tag </{}> does not match <{}> opened at line {}",
                                clip(name),
                                clip(&block.name),
                                block.line
                            ),
                        );
                    }
                    // Closed either way: the likeliest mistake is a typo.
                    events.extend(block.finish(&mut diag));
                }
            }
        } else if let Some(rest) = line.strip_prefix('<') {
            any_block = true;
            let (name, problem) = tag_name(rest, line);
            let problem = problem.or_else(|| check_name(name).err());
            let mut discard = problem.is_some();
            if let Some(msg) = problem {
                diag.at(n, msg);
            }
            if let Some(block) = open.take() {
                diag.at(
                    n,
                    format!(
                        "<{}> opened inside <{}> (line {}): blocks do not nest; close <{}> with </{}> first",
                        clip(name),
                        clip(&block.name),
                        block.line,
                        clip(&block.name),
                        clip(&block.name)
                    ),
                );
                events.extend(block.finish(&mut diag));
            }
            if !discard {
                let folded = name.to_ascii_lowercase();
                if let Some((first, first_line)) = names.get(&folded).map(|&i| &firsts[i]) {
                    diag.at(
                        n,
                        format!(
                            "event name '{}' already used by <{}> at line {first_line}",
                            clip(name),
                            clip(first)
                        ),
                    );
                    discard = true;
                } else {
                    names.insert(folded, firsts.len());
                    firsts.push((name.to_string(), n));
                }
            }
            open = Some(Block::new(name, n, discard));
        } else if let Some(block) = open.as_mut() {
            block.key_value(line, n, &mut diag);
        } else {
            diag.at(
                n,
                format!("'{}' is outside any <NAME> … </NAME> block", clip(line)),
            );
        }
    }
    if let Some(block) = open {
        diag.at(
            block.line,
            format!(
                "<{}> is never closed (missing </{}>)",
                clip(&block.name),
                clip(&block.name)
            ),
        );
    }
    if !any_block {
        diag.messages.push(format!(
            "{file}: no events: edit it (an event is a <NAME> … </NAME> block), \
             then check it with tportknockd -C {file}"
        ));
    }
    if diag.messages.is_empty() {
        Ok(Config {
            events,
            ..Config::default()
        })
    } else {
        Err(LoadError {
            messages: diag.messages,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knock::{flags, FlagSpec, Proto};
    use crate::testutil::Scratch;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::os::unix::fs::PermissionsExt;

    const SSH: &str = "<SSH>
 sequence      = udp:1234 tcp:543 tcp:543:i tcp:123:frap tcp:434:x tcp:2345:n
 timeout       = 10
 start_command = /usr/sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT
 stop_command  = /usr/sbin/iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT
 command_delay = 30
</SSH>
";

    fn ok(text: &str) -> Config {
        match parse(text.as_bytes(), "k.conf") {
            Ok(c) => c,
            Err(e) => panic!("unexpected errors:\n{e}"),
        }
    }

    fn errors(text: impl AsRef<[u8]>) -> Vec<String> {
        match parse(text.as_ref(), "k.conf") {
            Ok(c) => panic!("parsed, expected errors: {c:?}"),
            Err(e) => e.messages,
        }
    }

    /// A block with everything required, plus `extra` lines.
    fn block(name: &str, extra: &str) -> String {
        format!("<{name}>\nsequence = tcp:1:s tcp:2:f\ntimeout = 5\nstart_command = run %IP%\n{extra}</{name}>\n")
    }

    fn steps(text: &str) -> Vec<Step> {
        text.split_whitespace()
            .map(|s| s.parse().unwrap())
            .collect()
    }

    #[test]
    fn parses_the_original_ssh_event() {
        let c = ok(SSH);
        assert_eq!(
            c.events,
            vec![Event {
                name: "SSH".into(),
                line: 1,
                sequence: vec![
                    Step {
                        proto: Proto::Udp,
                        port: 1234,
                        flags: FlagSpec::Any
                    },
                    Step {
                        proto: Proto::Tcp,
                        port: 543,
                        flags: FlagSpec::Exact(0)
                    },
                    Step {
                        proto: Proto::Tcp,
                        port: 543,
                        flags: FlagSpec::Any
                    },
                    Step {
                        proto: Proto::Tcp,
                        port: 123,
                        flags: FlagSpec::Exact(flags::FIN | flags::RST | flags::ACK | flags::PSH)
                    },
                    Step {
                        proto: Proto::Tcp,
                        port: 434,
                        flags: FlagSpec::Exact(flags::CLASSIC)
                    },
                    Step {
                        proto: Proto::Tcp,
                        port: 2345,
                        flags: FlagSpec::Exact(0)
                    },
                ],
                timeout: 10,
                start_command: "/usr/sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT"
                    .into(),
                stop_command: Some(
                    "/usr/sbin/iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT".into()
                ),
                command_delay: Some(30),
                ..Default::default()
            }]
        );
    }

    #[test]
    fn parses_the_example_file() {
        let c = match parse(
            include_bytes!("../../knock.conf.example"),
            "knock.conf.example",
        ) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let names: Vec<&str> = c.events.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "SSH",
                "SSH-kernel",
                "SSH-ipset",
                "SSH-nft",
                "OpenVPN",
                "SSH2"
            ]
        );
        let ssh = &c.events[0];
        assert_eq!(ssh.sequence, ok(SSH).events[0].sequence);
        assert_eq!((ssh.timeout, ssh.command_delay), (10, Some(30)));

        let kernel = &c.events[1];
        let specs =
            |e: &Event| -> Vec<String> { e.sets.all().iter().map(|(t, _)| t.spec()).collect() };
        assert_eq!(
            specs(kernel),
            ["nft inet filter knocked4", "nft inet filter knocked6"]
        );
        assert_eq!(kernel.command_delay, Some(30));
        assert_eq!(kernel.start_for("10.0.0.1".parse().unwrap()), None);
        let ipset = &c.events[2];
        assert_eq!(specs(ipset), ["ipset knocked4", "ipset knocked6"]);
        assert!(ipset
            .stop_command
            .as_deref()
            .unwrap()
            .contains("closed for %IP%"));

        let nft = &c.events[3];
        assert_eq!(nft.sequence, steps("tcp:7001:fu udp:8002 tcp:9003:sr"));
        assert_eq!(
            nft.start_command,
            "/usr/sbin/nft add element inet filter knocked { %IP% timeout 30s }"
        );
        assert_eq!(
            (nft.stop_command.as_deref(), nft.command_delay),
            (None, None)
        );

        let vpn = &c.events[4];
        assert_eq!(
            vpn.sequence,
            steps("tcp:12430:a tcp:2711:i tcp:123:i tcp:8375:n tcp:1155:n")
        );
        assert_eq!(vpn.timeout, 10);
        assert_eq!(
            vpn.start_command,
            "/bin/openvpn --remote %IP% --config /opt/openvpn/client.conf"
        );
        assert_eq!(vpn.stop_command, None);

        let ssh2 = &c.events[5];
        assert_eq!(
            ssh2.sequence,
            steps("tcp:110:x tcp:110:up tcp:110:up tcp:110:n tcp:110:i")
        );
        assert_eq!(ssh2.sequence[1], ssh2.sequence[2]);
        assert_eq!((ssh2.timeout, ssh2.command_delay), (10, Some(30)));
        assert!(ssh2
            .stop_command
            .as_deref()
            .unwrap()
            .contains("-D INPUT -s %IP%"));
    }

    #[test]
    fn several_events_in_order_with_lines() {
        let text = format!("# head\n\n{}{}", block("a", ""), block("B_2.x-y", ""));
        let c = ok(&text);
        let got: Vec<(&str, usize)> = c.events.iter().map(|e| (e.name.as_str(), e.line)).collect();
        assert_eq!(got, [("a", 3), ("B_2.x-y", 8)]);
    }

    #[test]
    fn comments_blank_lines_and_hash_in_values() {
        let text = "\n  # comment\n\t#\tindented comment\n<E>\n   \n # inside\n\
                    sequence = tcp:1:s\ntimeout=7\n\
                    start_command = echo '#1' %IP% # not a comment\n</E>\n# tail";
        let e = &ok(text).events[0];
        assert_eq!(e.start_command, "echo '#1' %IP% # not a comment");
        assert_eq!(e.timeout, 7);
    }

    #[test]
    fn keys_are_case_insensitive_and_values_trimmed() {
        let text = "<E>\n\tSEQUENCE\t=\t tcp:1:s \t\nTimeOut = 3\nStart_Command =  a = b  \n\
                    STOP_COMMAND = c\ncommand_DELAY = 2678400\n</E>\n";
        let e = &ok(text).events[0];
        assert_eq!(e.start_command, "a = b");
        assert_eq!(e.stop_command.as_deref(), Some("c"));
        assert_eq!(e.command_delay, Some(MAX_COMMAND_DELAY));
    }

    #[test]
    fn crlf_no_trailing_newline_and_bom() {
        let text = SSH.replace('\n', "\r\n");
        assert_eq!(ok(&text), ok(SSH));
        let trimmed = SSH.trim_end();
        assert!(!trimmed.ends_with('\n'));
        assert_eq!(ok(trimmed), ok(SSH));
        let bom = format!("\u{feff}{SSH}");
        assert_eq!(ok(&bom), ok(SSH));
    }

    const NO_EVENTS: &str = "k.conf: no events: edit it (an event is a <NAME> … </NAME> \
                             block), then check it with tportknockd -C k.conf";

    #[test]
    fn empty_and_comment_only_files_have_no_event() {
        for text in ["", "\n\n", "# only\n  # comments\n"] {
            assert_eq!(errors(text), [NO_EVENTS]);
        }
    }

    #[test]
    fn stray_text_alone_is_two_errors() {
        assert_eq!(
            errors("junk\n"),
            [
                "k.conf:1: 'junk' is outside any <NAME> … </NAME> block",
                NO_EVENTS,
            ]
        );
    }

    #[test]
    fn text_outside_blocks() {
        let text = format!("timeout = 5\n{}stray\n", block("E", ""));
        assert_eq!(
            errors(text),
            [
                "k.conf:1: 'timeout = 5' is outside any <NAME> … </NAME> block",
                "k.conf:7: 'stray' is outside any <NAME> … </NAME> block",
            ]
        );
    }

    #[test]
    fn unknown_key_names_the_known_ones() {
        assert_eq!(
            errors(block("E", "colour = red\n")),
            ["k.conf:5: unknown key 'colour' (known keys: sequence, timeout, start_command, stop_command, command_delay, start_command_6, stop_command_6, nft_set, nft_set_6, ipset, ipset_6, max_doors, key_file, window)"]
        );
    }

    #[test]
    fn line_without_equals() {
        assert_eq!(
            errors(block("E", "stop_command /bin/true\n")),
            ["k.conf:5: expected 'key = value', got 'stop_command /bin/true'"]
        );
    }

    #[test]
    fn key_given_twice() {
        assert_eq!(
            errors(block("E", "TIMEOUT = 9\n")),
            ["k.conf:5: timeout given twice in <E> (first at line 3)"]
        );
    }

    #[test]
    fn empty_values() {
        assert_eq!(
            errors("<E>\nsequence =\ntimeout = \nstart_command =\t\n</E>\n"),
            [
                "k.conf:2: sequence has no value",
                "k.conf:3: timeout has no value",
                "k.conf:4: start_command has no value",
            ]
        );
    }

    #[test]
    fn missing_required_keys() {
        assert_eq!(
            errors("<E>\nstop_command = x\ncommand_delay = 1\n</E>\n"),
            [
                "k.conf:1: event <E> has no sequence; sequence, timeout and start_command are required",
                "k.conf:1: event <E> has no timeout; sequence, timeout and start_command are required",
                "k.conf:1: event <E> has no start_command; sequence, timeout and start_command are required",
            ]
        );
    }

    #[test]
    fn ipv6_commands() {
        let c = ok(&block(
            "E",
            "start_command_6 = run6 %IP%\nstop_command_6 = undo6 %IP%\ncommand_delay = 9\n",
        ));
        let e = &c.events[0];
        let (v4, v6): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "fd00::1".parse().unwrap());
        assert_eq!(
            (e.start_for(v4), e.start_for(v6)),
            (Some("run %IP%"), Some("run6 %IP%"))
        );
        assert_eq!((e.stop_for(v4), e.stop_for(v6)), (None, Some("undo6 %IP%")));
        assert_eq!(e.command_delay, Some(9));
        // Empty: nothing for IPv6; absent: IPv4's command.
        let c = ok(&block(
            "E",
            "start_command_6 =\nstop_command = undo %IP%\ncommand_delay = 9\n",
        ));
        let e = &c.events[0];
        assert_eq!((e.start_for(v6), e.stop_for(v6)), (None, Some("undo %IP%")));
        assert_eq!(
            errors(block("E", "stop_command_6 = undo6\n")),
            ["k.conf:5: stop_command_6 needs command_delay (the seconds to wait before running it)"]
        );
        // An empty stop_command_6 is no stop: command_delay has nothing to wait for.
        assert_eq!(
            errors(block("E", "stop_command_6 =\ncommand_delay = 3\n")),
            ["k.conf:6: command_delay without stop_command: there is nothing to run after the delay"]
        );
    }

    #[test]
    fn stop_and_delay_go_together() {
        assert_eq!(
            errors(block("E", "stop_command = x %IP%\n")),
            ["k.conf:5: stop_command needs command_delay (the seconds to wait before running it)"]
        );
        assert_eq!(
            errors(block("E", "command_delay = 30\n")),
            ["k.conf:5: command_delay without stop_command: there is nothing to run after the delay"]
        );
    }

    #[test]
    fn seconds_bounds() {
        for (value, good) in [
            ("1", true),
            ("86400", true),
            ("0", false),
            ("86401", false),
            ("-1", false),
            ("+5", false),
            ("10s", false),
            ("1.5", false),
            ("99999999999999999999", false),
        ] {
            let text =
                format!("<E>\nsequence = udp:9\ntimeout = {value}\nstart_command = x\n</E>\n");
            if good {
                assert_eq!(ok(&text).events[0].timeout.to_string(), value);
            } else {
                assert_eq!(
                    errors(&text),
                    [format!("k.conf:3: timeout must be whole seconds from 1 to 86400 (one day), not '{value}'")]
                );
            }
        }
        assert_eq!(
            errors(block("E", "stop_command = x\ncommand_delay = 2678401\n")),
            ["k.conf:6: command_delay must be whole seconds from 1 to 2678400 (31 days), not '2678401'"]
        );
        assert_eq!(
            errors(block("E", "stop_command = x\ncommand_delay = 0\n")),
            ["k.conf:6: command_delay must be whole seconds from 1 to 2678400 (31 days), not '0'"]
        );
    }

    #[test]
    fn bad_frames_use_step_messages() {
        let text = "<E>\nsequence = tcp:1:s icmp:4 tcp:0 udp:5:s tcp:7:q\ntimeout = 5\nstart_command = x\n</E>\n";
        let want: Vec<String> = ["icmp:4", "tcp:0", "udp:5:s", "tcp:7:q"]
            .iter()
            .map(|f| format!("k.conf:2: sequence: {}", f.parse::<Step>().unwrap_err()))
            .collect();
        assert_eq!(errors(text), want);
        assert_eq!(
            want[0],
            "k.conf:2: sequence: frame 'icmp:4': protocol must be tcp or udp, not 'icmp'"
        );
    }

    #[test]
    fn long_frames_and_many_bad_frames_are_clipped() {
        let long = "tcp:".to_string() + &"9".repeat(10_000);
        let text = format!("<E>\nsequence = {long}\ntimeout = 5\nstart_command = x\n</E>\n");
        assert_eq!(
            errors(&text),
            [format!(
                "k.conf:2: sequence: frame '{}…' is too long to be protocol:port[:flags]",
                &long[..60]
            )]
        );
        let many = vec!["bad"; 20].join(" ");
        let text = format!("<E>\nsequence = {many}\ntimeout = 5\nstart_command = x\n</E>\n");
        let errs = errors(&text);
        assert_eq!(errs.len(), 9);
        assert!(errs[..8]
            .iter()
            .all(|e| e.starts_with("k.conf:2: sequence: frame 'bad'")));
        assert_eq!(
            errs[8],
            "k.conf:2: sequence: 12 more bad frames on this line not shown"
        );
    }

    #[test]
    fn tag_errors() {
        assert_eq!(
            errors("<SSH>\nsequence = udp:9\ntimeout = 5\nstart_command = x\n</ssh>\n"),
            ["k.conf:5: closing tag </ssh> does not match <SSH> opened at line 1"]
        );
        assert_eq!(
            errors(format!("{}</E>\n", block("E", ""))),
            ["k.conf:6: closing tag </E> without an opening tag"]
        );
        assert_eq!(
            errors(block("E", "").replace("</E>", "</E")),
            ["k.conf:5: tag '</E' lacks its closing '>'"]
        );
        assert_eq!(
            errors(block("E", "").replace("<E>\n", "<E> # door\n")),
            ["k.conf:1: unexpected text '# door' after tag; a tag stands alone on its line"]
        );
        assert_eq!(errors(block("", "")), ["k.conf:1: event name is empty"]);
        assert_eq!(
            errors(block("a b", "")),
            ["k.conf:1: event name 'a b' may only contain letters, digits, '_', '-' and '.'"]
        );
        let long = "N".repeat(65);
        assert_eq!(
            errors(block(&long, "")),
            ["k.conf:1: event name is 65 bytes long; at most 64 allowed"]
        );
        assert!(ok(&block(&"N".repeat(64), "")).events.len() == 1);
    }

    #[test]
    fn nested_blocks() {
        let text = "<A>\nsequence = udp:9\ntimeout = 5\nstart_command = x\n<B>\nsequence = udp:8\ntimeout = 5\nstart_command = y\n</B>\n</A>\n";
        assert_eq!(
            errors(text),
            [
                "k.conf:5: <B> opened inside <A> (line 1): blocks do not nest; close <A> with </A> first",
                "k.conf:10: closing tag </A> without an opening tag",
            ]
        );
    }

    #[test]
    fn unterminated_block_names_its_opening_line() {
        let text = format!("{}<Late>\nsequence = udp:9\n", block("E", ""));
        assert_eq!(
            errors(text),
            ["k.conf:6: <Late> is never closed (missing </Late>)"]
        );
    }

    #[test]
    fn duplicate_names() {
        let text = format!(
            "{}{}{}",
            block("SSH", ""),
            block("ssh", ""),
            block("SSH", "")
        );
        assert_eq!(
            errors(text),
            [
                "k.conf:6: event name 'ssh' already used by <SSH> at line 1",
                "k.conf:11: event name 'SSH' already used by <SSH> at line 1",
            ]
        );
    }

    #[test]
    fn every_error_is_reported() {
        let text = "junk\n<A>\nsequence = tcp:0\ntimeout = 0\nstart_command = x\nfoo = 1\n</A>\n\
                    <A>\nsequence = udp:1\ntimeout = 1\nstart_command = x\n</B>\n<C>\n";
        let errs = errors(text);
        assert_eq!(
            errs,
            [
                "k.conf:1: 'junk' is outside any <NAME> … </NAME> block",
                "k.conf:3: sequence: frame 'tcp:0': port must be a number from 1 to 65535, not '0'",
                "k.conf:4: timeout must be whole seconds from 1 to 86400 (one day), not '0'",
                "k.conf:6: unknown key 'foo' (known keys: sequence, timeout, start_command, stop_command, command_delay, start_command_6, stop_command_6, nft_set, nft_set_6, ipset, ipset_6, max_doors, key_file, window)",
                "k.conf:8: event name 'A' already used by <A> at line 2",
                "k.conf:12: closing tag </B> does not match <A> opened at line 8",
                "k.conf:13: <C> is never closed (missing </C>)",
            ]
        );
    }

    #[test]
    fn binary_junk_and_control_characters() {
        let mut text = block("E", "").into_bytes();
        text.splice(0..0, b"\xff\xfe\x00garbage\n".iter().copied());
        assert_eq!(
            errors(&text),
            ["k.conf:1: line is not text (invalid UTF-8 at byte 1)"]
        );

        let text = block("E", "stop_command = rm\0 -rf\ncommand_delay = 3\n");
        assert_eq!(
            errors(text),
            ["k.conf:5: line contains control character U+0000; only text and tabs are allowed"]
        );

        // Inside a block an unreadable line might have been any key, so it
        // does not also produce "missing key" noise.
        let text = b"<E>\nsequence = udp:1\n\xc3\x28start_command = x\ntimeout = 1\n</E>\n";
        assert_eq!(
            errors(text),
            ["k.conf:3: line is not text (invalid UTF-8 at byte 1)"]
        );

        // Latin-1 in a comment is harmless.
        let mut text = b"# caf\xe9\n".to_vec();
        text.extend_from_slice(SSH.as_bytes());
        assert_eq!(parse(&text, "k.conf").unwrap().events.len(), 1);
    }

    #[test]
    fn random_bytes_never_panic() {
        // Deterministic junk, including every byte value.
        let mut rng = crate::testutil::XorShift(0x9e37_79b9_7f4a_7c15);
        for round in 0..200 {
            let len = (round * 37) % 3000;
            let mut bytes = Vec::with_capacity(len);
            for _ in 0..len {
                bytes.push(rng.next() as u8);
            }
            // Mix in config tokens so the parser gets past the first checks.
            let mut text = SSH.as_bytes()[..(round * 7) % SSH.len()].to_vec();
            text.extend_from_slice(&bytes);
            if let Err(e) = parse(&text, "k.conf") {
                assert!(!e.messages.is_empty());
                assert!(e
                    .messages
                    .iter()
                    .all(|m| m.starts_with("k.conf:") && m.len() < 400));
            }
        }
    }

    #[test]
    fn huge_lines_are_refused_without_echo() {
        let mib = "A".repeat(1 << 20);
        let text = format!("{mib}\n{}", block("E", &format!("start_command = {mib}\n")));
        let errs = errors(text);
        assert_eq!(
            errs,
            [
                "k.conf:1: line is 1048576 bytes long; at most 65536 allowed",
                "k.conf:6: line is 1048592 bytes long; at most 65536 allowed",
            ]
        );
        // A huge comment is just a comment; a long command under the cap is fine.
        let cmd = "x".repeat(60_000);
        let text = format!("#{mib}\n{}", SSH.replace("/usr/sbin/iptables -A", &cmd));
        assert!(ok(&text).events[0].start_command.starts_with(&cmd));
        // Unknown keys and stray text are echoed clipped.
        let errs = errors(format!("{mib:.1000}\n{SSH}"));
        assert_eq!(
            errs,
            [format!(
                "k.conf:1: '{}…' is outside any <NAME> … </NAME> block",
                "A".repeat(60)
            )]
        );
    }

    #[test]
    fn expand_replaces_every_ip() {
        let v4 = IpAddr::V4(Ipv4Addr::new(10, 199, 0, 2));
        let v6 = IpAddr::V6("fd00:199::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(
            expand("iptables -A INPUT -s %IP% -j ACCEPT # %IP%", v4),
            "iptables -A INPUT -s 10.199.0.2 -j ACCEPT # 10.199.0.2"
        );
        assert_eq!(expand("%IP%%IP%", v6), "fd00:199::2fd00:199::2");
        assert_eq!(expand("no address %ip% %IP", v4), "no address %ip% %IP");
    }

    // ---- load: ownership and permissions ----

    #[test]
    fn load_accepts_a_private_file() {
        let dir = Scratch::new("ok");
        for mode in [0o600, 0o644, 0o400] {
            let path = dir.file("knock.conf", SSH, mode);
            assert_eq!(load(&path).unwrap(), ok(SSH));
        }
    }

    #[test]
    fn load_refuses_writable_by_group_or_others() {
        let dir = Scratch::new("mode");
        for mode in [0o666, 0o620, 0o602] {
            let path = dir.file("knock.conf", SSH, mode);
            let name = path.display().to_string();
            assert_eq!(
                load(&path).unwrap_err().messages,
                [format!(
                    "{name}: refusing to load: group or others can write it (mode {mode:04o}), \
                     and its commands run with tportknockd's rights (usually root); \
                     fix: chmod go-w {name}"
                )]
            );
        }
    }

    #[test]
    fn load_refuses_a_file_owned_by_someone_else() {
        let euid = crate::sys::daemon::euid();
        assert_eq!(
            euid, 0,
            "chown needs root: run `sudo cargo test --lib config`"
        );
        let dir = Scratch::new("owner");
        let path = dir.file("knock.conf", SSH, 0o644);
        std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
        let name = path.display().to_string();
        let want = format!(
            "{name}: refusing to load: it is owned by uid 65534, not by root or by uid 0 \
             who runs tportknockd, and its commands run with tportknockd's rights \
             (usually root); fix: chown root {name}"
        );
        assert_eq!(
            load(&path).unwrap_err().messages,
            std::slice::from_ref(&want)
        );
        // Both problems at once are both reported.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o664)).unwrap();
        let msgs = load(&path).unwrap_err().messages;
        assert_eq!(msgs.len(), 2);
        assert!(msgs[0].contains("chmod go-w"));
        assert_eq!(msgs[1], want);
    }

    #[test]
    fn ownership_rule_allows_root_and_the_running_user() {
        let euid = crate::sys::daemon::euid();
        assert_eq!(
            euid, 0,
            "chown needs root: run `sudo cargo test --lib config`"
        );
        let dir = Scratch::new("rule");
        let path = dir.file("knock.conf", SSH, 0o600);
        std::os::unix::fs::chown(&path, Some(1000), None).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        // Owned by 1000: fine for a daemon running as uid 1000, not for root.
        assert!(ownership_problems(&meta, 1000, "f").is_empty());
        assert_eq!(ownership_problems(&meta, 0, "f").len(), 1);
        std::os::unix::fs::chown(&path, Some(0), None).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert!(ownership_problems(&meta, 1000, "f").is_empty());
    }

    #[test]
    fn load_reports_parse_errors_and_odd_files() {
        let dir = Scratch::new("odd");
        let path = dir.file("bad.conf", "<E>\n", 0o600);
        let name = path.display().to_string();
        assert_eq!(
            load(&path).unwrap_err().messages,
            [format!("{name}:1: <E> is never closed (missing </E>)")]
        );

        let missing = dir.0.join("absent.conf");
        let msg = &load(&missing).unwrap_err().messages[0];
        assert!(
            msg.starts_with(&format!("{}: cannot open: ", missing.display())),
            "{msg}"
        );

        let msg = &load(&dir.0).unwrap_err().messages[0];
        assert_eq!(*msg, format!("{}: not a regular file", dir.0.display()));

        // A FIFO must be refused, not waited on.
        let fifo = dir.0.join("fifo");
        let status = std::process::Command::new("mkfifo")
            .arg("-m")
            .arg("600")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        let msg = &load(&fifo).unwrap_err().messages[0];
        assert_eq!(*msg, format!("{}: not a regular file", fifo.display()));
    }

    #[test]
    fn too_many_steps_are_refused_with_the_limit_named() {
        let mut text = String::new();
        for i in 0..MAX_TOTAL_STEPS / 2 {
            text += &format!(
                "<E{i}>\n sequence = tcp:1 udp:{}\n timeout = 5\n start_command = true\n</E{i}>\n",
                1 + i % 60_000
            );
        }
        assert_eq!(
            parse(text.as_bytes(), "k.conf").unwrap().events.len(),
            MAX_TOTAL_STEPS / 2
        );
        text += "<LAST>\n sequence = tcp:2\n timeout = 5\n start_command = true\n</LAST>\n";
        let e = parse(text.as_bytes(), "k.conf").unwrap_err();
        assert_eq!(
            e.messages,
            [format!(
                "k.conf: {} events with {} steps in all; at most {MAX_TOTAL_STEPS} steps \
                 (events × steps) are allowed: split the events over several daemons or \
                 shorten the sequences",
                MAX_TOTAL_STEPS / 2 + 1,
                MAX_TOTAL_STEPS + 1
            )]
        );
    }

    #[test]
    fn read_limited_refuses_what_load_refuses_but_not_for_ownership() {
        let dir = Scratch::new("limited");
        let path = dir.file("k.conf", "<E>\n sequence = tcp:1\n</E>\n", 0o666);
        assert!(load(&path).is_err());
        assert_eq!(
            read_limited(&path).unwrap(),
            b"<E>\n sequence = tcp:1\n</E>\n"
        );
        let msg = &read_limited(&dir.0).unwrap_err().messages[0];
        assert_eq!(*msg, format!("{}: not a regular file", dir.0.display()));
        let msg = &read_limited(Path::new("/dev/zero")).unwrap_err().messages[0];
        assert_eq!(msg, "/dev/zero: not a regular file");
    }

    fn set_block(body: &str) -> String {
        format!("<K>\nsequence = tcp:1:s tcp:2:f\ntimeout = 5\n{body}</K>\n")
    }

    #[test]
    fn kernel_door_sets() {
        let text = set_block(
            "nft_set = inet filter knocked4\nnft_set_6 = inet filter knocked6\n\
             ipset = k4\nipset_6 = k6\ncommand_delay = 30\n",
        );
        let e = &parse(text.as_bytes(), "k.conf").unwrap().events[0];
        assert_eq!(
            e.sets.nft.as_ref().unwrap().to_string(),
            "inet filter knocked4"
        );
        assert_eq!(e.sets.nft_6.as_ref().unwrap().set, "knocked6");
        assert_eq!(e.sets.ipset.as_ref().unwrap().as_str(), "k4");
        assert_eq!(e.sets.ipset_6.as_ref().unwrap().as_str(), "k6");
        // A set is a door by itself: no start or stop command needed.
        assert_eq!(
            (e.start_command.as_str(), e.stop_command.as_deref()),
            ("", None)
        );
        assert_eq!(e.command_delay, Some(30));
        assert_eq!(e.start_for("192.0.2.1".parse().unwrap()), None);
        // With commands too: both kept.
        let text = block(
            "E",
            "stop_command = undo %IP%\nnft_set = ip t s\ncommand_delay = 9\n",
        );
        let e = &parse(text.as_bytes(), "k.conf").unwrap().events[0];
        assert_eq!(e.start_command, "run %IP%");
        assert_eq!(e.sets.nft.as_ref().unwrap().family, sets::NftFamily::Ip);
    }

    #[test]
    fn kernel_door_set_errors() {
        assert_eq!(
            errors(set_block("nft_set = inet filter k4\n")),
            ["k.conf:4: nft_set needs command_delay (the seconds the address stays in the set)"]
        );
        assert_eq!(
            errors(set_block("nft_set = filter k4\ncommand_delay = 3\n")),
            ["k.conf:4: nft_set: expects three words: family table set (e.g. 'inet filter knocked4')"]
        );
        assert_eq!(
            errors(set_block("ipset_6 = k6;x\ncommand_delay = 3\n")),
            ["k.conf:4: ipset_6: ipset name must be 1 to 31 letters, digits, '_', '-' or '.', starting with a letter or '_'"]
        );
        assert_eq!(
            errors(set_block("ipset = k4\ncommand_delay = 2678400\n")),
            ["k.conf:5: command_delay is an ipset timeout here, at most 2147483 seconds, not 2678400"]
        );
        // Without a set, the old rules hold.
        assert_eq!(
            errors(set_block("command_delay = 3\n")),
            [
                "k.conf:1: event <K> has no start_command; sequence, timeout and start_command are required",
                "k.conf:4: command_delay without stop_command: there is nothing to run after the delay"
            ]
        );
    }

    const HEX32: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";

    fn rotating(extra: &str) -> String {
        format!(
            "<R>\nsequence = tcp:40000-40999:{{s,fs,su}} udp:50000-50999 tcp:22:s\n\
             timeout = 5\nstart_command = run %IP%\n{extra}</R>\n"
        )
    }

    #[test]
    fn key_file_makes_the_sequence_templates() {
        let c = ok(&rotating("key_file = r.key\nwindow = 10\n"));
        let ev = &c.events[0];
        assert!(ev.sequence.is_empty());
        let r = ev.rotation.as_ref().unwrap();
        assert_eq!(r.key_file, Path::new("r.key"));
        assert_eq!(r.window.secs(), 10);
        assert_eq!(r.key, None, "parse reads no key file");
        let texts: Vec<String> = r.templates.iter().map(|t| t.to_string()).collect();
        assert_eq!(
            texts,
            ["tcp:40000-40999:{s,fs,su}", "udp:50000-50999", "tcp:22:s"]
        );
        // window defaults to 30 s; key_file may come before sequence.
        let c = ok(
            "<R>\nkey_file = /k\nsequence = udp:1-9 udp:5\ntimeout = 5\n\
                    start_command = x\n</R>\n",
        );
        assert_eq!(c.events[0].rotation.as_ref().unwrap().window.secs(), 30);
        // Plain events are unchanged: one-port, one-flag frames are steps.
        let c = ok(&block("P", ""));
        assert_eq!(c.events[0].sequence, steps("tcp:1:s tcp:2:f"));
        assert_eq!(c.events[0].rotation, None);
        assert_eq!(
            ok("<P>\nsequence = tcp:7-7:s\ntimeout = 5\nstart_command = x\n</P>\n").events[0]
                .sequence,
            steps("tcp:7:s")
        );
    }

    #[test]
    fn ranges_sets_and_window_need_key_file() {
        assert_eq!(
            errors(rotating("")),
            ["k.conf:2: sequence: frame 'tcp:40000-40999:{s,fs,su}' and 1 more draw from a port \
              range or a set of flag combinations, which only a rotating event can: add key_file \
              (a key made by tportknock -K FILE; see ROTATING SEQUENCES in knock.conf(5)), or \
              give single ports and flags"]
        );
        assert_eq!(
            errors("<P>\nsequence = tcp:7:{s,fs}\ntimeout = 5\nstart_command = x\n</P>\n"),
            [
                "k.conf:2: sequence: frame 'tcp:7:{s,fs}' draw from a port range or a set of flag \
              combinations, which only a rotating event can: add key_file (a key made by \
              tportknock -K FILE; see ROTATING SEQUENCES in knock.conf(5)), or give single \
              ports and flags"
            ]
        );
        assert_eq!(
            errors(block("P", "window = 30\n")),
            [
                "k.conf:5: window without key_file: only a rotating event has windows; add \
              key_file (see ROTATING SEQUENCES in knock.conf(5)) or remove window"
            ]
        );
        for bad in ["4", "3601", "0", "-5", "30s", " ", "99999999999"] {
            let errs = errors(rotating(&format!("key_file = k\nwindow = {bad}\n")));
            let want = if bad.trim().is_empty() {
                "k.conf:6: window has no value".to_string()
            } else {
                format!("k.conf:6: window must be whole seconds from 5 to 3600, not '{bad}'")
            };
            assert_eq!(errs, [want], "{bad:?}");
        }
        assert_eq!(
            errors(rotating("key_file =\n")),
            ["k.conf:5: key_file has no value"]
        );
        // Template errors are the plain step parser's.
        assert_eq!(
            errors(rotating("key_file = k\n").replace("udp:50000-50999", "udp:9-5")),
            [
                "k.conf:2: sequence: frame 'udp:9-5': port range 9-5 is backwards; write the \
              lower port first"
            ]
        );
    }

    #[test]
    fn rotating_events_count_every_window_they_hold_towards_the_step_limit() {
        // 65,536 steps in all: 4 events of 4,096 templates in 4 windows
        // each fit; one template more does not.
        let event = |name: &str, n: usize| {
            format!(
                "<{name}>\nsequence = {}\nkey_file = k\ntimeout = 5\nstart_command = x\n</{name}>\n",
                vec!["udp:1-9"; n].join(" ")
            )
        };
        let full: String = ["A", "B", "C", "D"]
            .iter()
            .map(|n| event(n, 4096))
            .collect();
        assert!(parse(full.as_bytes(), "k.conf").is_ok());
        let over = full + &event("E", 1);
        let e = parse(over.as_bytes(), "k.conf").unwrap_err();
        assert!(e.messages[0].contains("with 65540 steps in all"), "{e}");
    }

    #[test]
    fn load_reads_the_key_beside_the_config_and_refuses_open_key_files() {
        let dir = Scratch::new("rotkey");
        let conf = dir.file("knock.conf", rotating("key_file = r.key\n"), 0o600);
        let name = conf.display().to_string();
        let e = load(&conf).unwrap_err();
        assert_eq!(e.messages.len(), 1);
        assert!(
            e.messages[0].starts_with(&format!(
                "{name}:1: key_file: {}: cannot open: ",
                dir.0.join("r.key").display()
            )) && e.messages[0].ends_with("writes a new key"),
            "{e}"
        );
        let key = dir.file("r.key", HEX32, 0o600);
        let c = load(&conf).unwrap();
        let r = c.events[0].rotation.as_ref().unwrap();
        assert_eq!(
            r.key.as_ref().unwrap().as_bytes(),
            (0u8..32).collect::<Vec<u8>>()
        );
        assert!(!format!("{c:?}").contains("0102"), "Debug shows no key");
        for mode in [0o644, 0o640, 0o604, 0o660] {
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = load(&conf).unwrap_err();
            let want = format!(
                "{name}:1: key_file: {}: refusing the key: group or others have access to it \
                 (mode {mode:04o}), and whoever reads it can knock; fix: chmod 600 {}",
                key.display(),
                key.display()
            );
            assert_eq!(e.messages, [want]);
            assert!(!e.to_string().contains("0001020304"));
        }
    }

    #[test]
    fn load_refuses_a_key_file_owned_by_someone_else() {
        assert_eq!(
            crate::sys::daemon::euid(),
            0,
            "chown needs root: run `sudo cargo test --lib config`"
        );
        let dir = Scratch::new("rotown");
        let conf = dir.file("knock.conf", rotating("key_file = r.key\n"), 0o600);
        let key = dir.file("r.key", HEX32, 0o600);
        std::os::unix::fs::chown(&key, Some(65534), None).unwrap();
        let e = load(&conf).unwrap_err();
        assert_eq!(e.messages.len(), 1);
        assert!(
            e.messages[0].contains(
                "refusing the key: the file is owned by uid 65534, not by root or by uid 0 who \
                 reads it"
            ) && e.messages[0].ends_with(&format!("fix: chown 0 {}", key.display())),
            "{e}"
        );
    }
}

//! knockd.conf: the `[section]` format of knockd, read into the same
//! [`Config`] as knock.conf so that an existing `/etc/knockd.conf` opens the
//! same doors.
//!
//! ```text
//! [options]
//!     logfile = /var/log/knockd.log
//! [opencloseSSH]
//!     sequence      = 2222:udp,3333:tcp,4444:udp
//!     seq_timeout   = 15
//!     tcpflags      = syn,ack
//!     start_command = /usr/sbin/iptables -A INPUT -s %IP% -p tcp --syn -j ACCEPT
//!     cmd_timeout   = 5
//!     stop_command  = /usr/sbin/iptables -D INPUT -s %IP% -p tcp --syn -j ACCEPT
//! ```
//!
//! Keys are case-insensitive; `#` starts a comment at the start of a line.
//! knockd's semantics are kept where they are its design (TCP frames whose
//! flags miss `TCPFlags` are ignored, not wrong; the stop runs `Cmd_Timeout`
//! seconds after the start; `Target` replaces the own addresses) and dropped
//! where they are its accidents: this reader is strict where knockd reads
//! `atoi` garbage, and rejects what knockd would silently misread.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;

use super::{
    check_name, clip, strip_bom, text_line, Config, Diag, Event, Format, GlobalOptions, LoadError,
    MAX_COMMAND_DELAY, MAX_TIMEOUT,
};
use crate::knock::{flags, FlagSpec, Proto, Step};

/// knockd's default `Seq_Timeout`.
pub const DEFAULT_SEQ_TIMEOUT: u32 = 25;
/// knockd's default `Cmd_Timeout`.
pub const DEFAULT_CMD_TIMEOUT: u32 = 10;
/// Bad ports reported per sequence before the rest are only counted.
const MAX_PORT_ERRORS: usize = 8;

/// An event's keys, in the order messages list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Sequence,
    OneTime,
    SeqTimeout,
    TcpFlags,
    Target,
    Start,
    Start6,
    CmdTimeout,
    Stop,
    Stop6,
}

impl Key {
    const COUNT: usize = 10;
    const KNOWN: &'static str = "Sequence, One_Time_Sequences, Seq_Timeout, TCPFlags, Target, \
         Start_Command (Command), Start_Command_6 (Command_6), Cmd_Timeout, Stop_Command, \
         Stop_Command_6";

    fn from_name(text: &str) -> Option<Key> {
        Some(match text.to_ascii_lowercase().as_str() {
            "sequence" => Key::Sequence,
            "one_time_sequences" => Key::OneTime,
            "seq_timeout" | "timeout" => Key::SeqTimeout,
            "tcpflags" => Key::TcpFlags,
            "target" => Key::Target,
            "start_command" | "command" => Key::Start,
            "start_command_6" | "command_6" => Key::Start6,
            "cmd_timeout" => Key::CmdTimeout,
            "stop_command" => Key::Stop,
            "stop_command_6" => Key::Stop6,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Key::Sequence => "Sequence",
            Key::OneTime => "One_Time_Sequences",
            Key::SeqTimeout => "Seq_Timeout",
            Key::TcpFlags => "TCPFlags",
            Key::Target => "Target",
            Key::Start => "Start_Command",
            Key::Start6 => "Start_Command_6",
            Key::CmdTimeout => "Cmd_Timeout",
            Key::Stop => "Stop_Command",
            Key::Stop6 => "Stop_Command_6",
        }
    }

    /// Commands may be empty: knockd's way to say "run nothing".
    fn may_be_empty(self) -> bool {
        matches!(self, Key::Start | Key::Start6 | Key::Stop | Key::Stop6)
    }
}

/// A `[name]` section being read.
struct Section {
    name: String,
    line: usize,
    /// Bad or duplicate name: checked, never becomes an event.
    discard: bool,
    seen: [Option<usize>; Key::COUNT],
    /// (protocol, port) pairs; flags are applied once TCPFlags is known.
    ports: Option<Vec<(Proto, u16)>>,
    one_time: Option<PathBuf>,
    seq_timeout: Option<u32>,
    tcp_flags: Option<FlagSpec>,
    target: Option<IpAddr>,
    start: Option<String>,
    start6: Option<String>,
    cmd_timeout: Option<u32>,
    stop: Option<String>,
    stop6: Option<String>,
    /// A value failed to parse: the section is reported, not built.
    broken: bool,
}

impl Section {
    fn new(name: &str, line: usize, discard: bool) -> Section {
        Section {
            name: name.to_string(),
            line,
            discard,
            seen: [None; Key::COUNT],
            ports: None,
            one_time: None,
            seq_timeout: None,
            tcp_flags: None,
            target: None,
            start: None,
            start6: None,
            cmd_timeout: None,
            stop: None,
            stop6: None,
            broken: false,
        }
    }

    fn directive(&mut self, key_text: &str, value: &str, n: usize, diag: &mut Diag<'_>) {
        let Some(key) = Key::from_name(key_text) else {
            self.broken = true;
            diag.at(
                n,
                format!(
                    "unknown key '{}' in [{}] (known keys: {})",
                    clip(key_text),
                    clip(&self.name),
                    Key::KNOWN
                ),
            );
            return;
        };
        if let Some(first) = self.seen[key as usize] {
            self.broken = true;
            diag.at(
                n,
                format!(
                    "{} given twice in [{}] (first at line {first})",
                    key.name(),
                    clip(&self.name)
                ),
            );
            return;
        }
        self.seen[key as usize] = Some(n);
        if value.is_empty() && !key.may_be_empty() {
            self.broken = true;
            diag.at(n, format!("{} has no value", key.name()));
            return;
        }
        let ok = match key {
            Key::Sequence => parse_ports(value)
                .map(|p| self.ports = Some(p))
                .map_err(|e| format!("Sequence: {e}")),
            Key::OneTime => {
                let path = PathBuf::from(value);
                if path.is_absolute() {
                    self.one_time = Some(path);
                    Ok(())
                } else {
                    Err(format!(
                        "One_Time_Sequences must be an absolute path, not '{}'",
                        clip(value)
                    ))
                }
            }
            Key::SeqTimeout => seconds(value, 1, MAX_TIMEOUT)
                .map(|s| self.seq_timeout = Some(s))
                .map_err(|e| format!("Seq_Timeout {e}")),
            Key::CmdTimeout => seconds(value, 0, MAX_COMMAND_DELAY)
                .map(|s| self.cmd_timeout = Some(s))
                .map_err(|e| format!("Cmd_Timeout {e}")),
            Key::TcpFlags => parse_tcp_flags(value)
                .map(|f| self.tcp_flags = Some(f))
                .map_err(|e| format!("TCPFlags: {e}")),
            Key::Target => value
                .parse::<IpAddr>()
                .map(|a| self.target = Some(a))
                .map_err(|_| {
                    format!(
                        "Target must be one IPv4 or IPv6 address, not '{}'",
                        clip(value)
                    )
                }),
            Key::Start => {
                self.start = Some(value.to_string());
                Ok(())
            }
            Key::Start6 => {
                self.start6 = Some(value.to_string());
                Ok(())
            }
            Key::Stop => {
                self.stop = Some(value.to_string());
                Ok(())
            }
            Key::Stop6 => {
                self.stop6 = Some(value.to_string());
                Ok(())
            }
        };
        if let Err(msg) = ok {
            self.broken = true;
            diag.at(n, msg);
        }
    }

    /// Checks the section as a whole; an event if all is well.
    fn finish(self, diag: &mut Diag<'_>) -> Option<Event> {
        let name = clip(&self.name);
        match (
            self.seen[Key::Sequence as usize],
            self.seen[Key::OneTime as usize],
        ) {
            (None, None) if !self.broken => diag.at(
                self.line,
                format!("[{name}] has neither Sequence nor One_Time_Sequences"),
            ),
            (Some(_), Some(line)) => {
                diag.at(
                    line,
                    format!("[{name}] has both Sequence and One_Time_Sequences; give one of them"),
                );
                return None;
            }
            _ => {}
        }
        if let Some(line) = self.seen[Key::Start6 as usize] {
            if let Some(msg) = super::ipv6_stop_missing(
                Key::Start6.name(),
                Key::Stop6.name(),
                self.start6.as_deref().unwrap_or(""),
                self.stop.as_deref().unwrap_or(""),
                self.stop6.is_some(),
            ) {
                diag.at(line, format!("[{name}] {msg}"));
                return None;
            }
        }
        if self.broken || self.discard {
            return None;
        }
        let tcp = self.tcp_flags.unwrap_or(FlagSpec::Any);
        let sequence = match &self.ports {
            Some(ports) => with_flags(ports, tcp),
            None if self.one_time.is_some() => Vec::new(),
            None => return None,
        };
        let any_stop = [&self.stop, &self.stop6]
            .iter()
            .any(|s| s.as_ref().is_some_and(|s| !s.is_empty()));
        Some(Event {
            name: self.name,
            line: self.line,
            sequence,
            timeout: self.seq_timeout.unwrap_or(DEFAULT_SEQ_TIMEOUT),
            start_command: self.start.unwrap_or_default(),
            stop_command: self.stop.filter(|s| !s.is_empty()),
            command_delay: any_stop.then(|| self.cmd_timeout.unwrap_or(DEFAULT_CMD_TIMEOUT)),
            start_command_6: self.start6,
            stop_command_6: self.stop6,
            tcp_gate: self.tcp_flags,
            target: self.target,
            one_time: self.one_time,
            sets: Default::default(),
            max_doors: None,
            rotation: None,
        })
    }
}

/// The steps of `ports`, TCP ones demanding `tcp` flags.
pub fn with_flags(ports: &[(Proto, u16)], tcp: FlagSpec) -> Vec<Step> {
    ports
        .iter()
        .map(|&(proto, port)| Step {
            proto,
            port,
            flags: if proto == Proto::Tcp {
                tcp
            } else {
                FlagSpec::Any
            },
        })
        .collect()
}

/// knockd's sequence: `port[:tcp|udp]` separated by commas, TCP by default;
/// spaces around items are allowed.
pub fn parse_ports(text: &str) -> Result<Vec<(Proto, u16)>, String> {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    let mut bad_count = 0usize;
    for item in text.split(',') {
        let item = item.trim();
        let (port_text, proto_text) = match item.split_once(':') {
            Some((p, proto)) => (p.trim(), Some(proto.trim())),
            None => (item, None),
        };
        let proto = match proto_text {
            None => Some(Proto::Tcp),
            Some(p) if p.eq_ignore_ascii_case("tcp") => Some(Proto::Tcp),
            Some(p) if p.eq_ignore_ascii_case("udp") => Some(Proto::Udp),
            Some(_) => None,
        };
        let port = port_text
            .parse::<u16>()
            .ok()
            .filter(|&p| p >= 1 && port_text.bytes().all(|b| b.is_ascii_digit()));
        match (port, proto) {
            (Some(port), Some(proto)) => out.push((proto, port)),
            _ => {
                bad_count += 1;
                if bad_count <= MAX_PORT_ERRORS {
                    bad.push(format!("'{}'", clip(item)));
                }
            }
        }
    }
    if bad_count > 0 {
        let more = if bad_count > MAX_PORT_ERRORS {
            format!(" and {} more", bad_count - MAX_PORT_ERRORS)
        } else {
            String::new()
        };
        return Err(format!(
            "{}{more} not port[:tcp|udp] with a port from 1 to 65535",
            bad.join(", ")
        ));
    }
    Ok(out)
}

/// `syn,!ack`: names of the six flags, `!` forbidding one; commas, spaces
/// around them allowed.
pub fn parse_tcp_flags(text: &str) -> Result<FlagSpec, String> {
    let (mut set, mut clear) = (0u8, 0u8);
    for item in text.split(',') {
        let item = item.trim();
        let (negated, name) = match item.strip_prefix('!') {
            Some(rest) => (true, rest.trim_start()),
            None => (false, item),
        };
        let Some((_, bit, _)) = flags::LETTERS
            .iter()
            .find(|(_, _, n)| n.eq_ignore_ascii_case(name))
        else {
            return Err(format!(
                "unknown flag '{}' (known: fin syn rst psh ack urg, each optionally after '!')",
                clip(item)
            ));
        };
        if (negated && set & bit != 0) || (!negated && clear & bit != 0) {
            return Err(format!(
                "{} is both demanded and forbidden",
                name.to_ascii_lowercase()
            ));
        }
        if negated {
            clear |= bit;
        } else {
            set |= bit;
        }
    }
    Ok(FlagSpec::Mask { set, clear })
}

fn seconds(text: &str, min: u32, max: u32) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(s) if (min..=max).contains(&s) && text.bytes().all(|b| b.is_ascii_digit()) => Ok(s),
        _ => Err(format!(
            "must be whole seconds from {min} to {max}, not '{}'",
            clip(text)
        )),
    }
}

/// The knockd reader behind `config::parse`.
pub fn parse(text: &[u8], file: &str) -> Result<Config, LoadError> {
    let text = strip_bom(text);
    let mut diag = Diag {
        file,
        messages: Vec::new(),
    };
    let mut events = Vec::new();
    let mut options = GlobalOptions::default();
    let mut names: HashMap<String, usize> = HashMap::new();
    // None: before any section; Some(None): in [options].
    let mut current: Option<Option<Section>> = None;
    // The [options] keys given so far, with their lines (four at most: a
    // list, not another map type in the binary).
    let mut options_seen: Vec<(&'static str, usize)> = Vec::new();

    for (n, raw) in super::content_lines(text) {
        let line = match text_line(raw) {
            Ok(line) => line.trim(),
            Err(problem) => {
                diag.at(n, problem);
                if let Some(Some(section)) = current.as_mut() {
                    section.broken = true;
                }
                continue;
            }
        };
        if let Some(rest) = line.strip_prefix('[') {
            let Some(name) = rest.strip_suffix(']') else {
                if let Some(Some(section)) = current.take() {
                    events.extend(section.finish(&mut diag));
                }
                diag.at(
                    n,
                    format!("section header '{}' lacks its closing ']'", clip(line)),
                );
                // What follows belongs to no valid section.
                let mut section = Section::new(rest, n, true);
                section.broken = true;
                current = Some(Some(section));
                continue;
            };
            if let Some(Some(section)) = current.take() {
                events.extend(section.finish(&mut diag));
            }
            let name = name.trim();
            if name.eq_ignore_ascii_case("options") {
                current = Some(None);
                continue;
            }
            let mut discard = false;
            if let Err(msg) = check_name(name) {
                diag.at(n, msg);
                discard = true;
            } else if let Some(first) = names.get(&name.to_ascii_lowercase()) {
                diag.at(
                    n,
                    format!("section name '{}' already used at line {first}", clip(name)),
                );
                discard = true;
            } else {
                names.insert(name.to_ascii_lowercase(), n);
            }
            current = Some(Some(Section::new(name, n, discard)));
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (line, None),
        };
        match current.as_mut() {
            None => diag.at(
                n,
                format!(
                    "'{}' comes before any [section]; directives belong to [options] or an event",
                    clip(line)
                ),
            ),
            Some(Some(section)) => match value {
                Some(value) => section.directive(key, value, n, &mut diag),
                None => {
                    section.broken = true;
                    diag.at(n, format!("expected 'key = value', got '{}'", clip(line)));
                }
            },
            Some(None) => option(key, value, n, &mut options, &mut options_seen, &mut diag),
        }
    }
    if let Some(Some(section)) = current {
        events.extend(section.finish(&mut diag));
    }
    if names.is_empty() && diag.messages.is_empty() {
        diag.messages.push(format!(
            "{file}: no events: edit it (an event is a [name] section besides \
             [options]), then check it with tportknockd -C {file}"
        ));
    }
    if diag.messages.is_empty() {
        Ok(Config {
            events,
            format: Format::Knockd,
            options,
            warnings: Vec::new(),
        })
    } else {
        Err(LoadError {
            messages: diag.messages,
        })
    }
}

/// One line of `[options]`.
fn option(
    key: &str,
    value: Option<&str>,
    n: usize,
    options: &mut GlobalOptions,
    seen: &mut Vec<(&'static str, usize)>,
    diag: &mut Diag<'_>,
) {
    let canonical = match key.to_ascii_lowercase().as_str() {
        "usesyslog" => "UseSyslog",
        "logfile" => "LogFile",
        "pidfile" => "PidFile",
        "interface" => "Interface",
        _ => {
            diag.at(
                n,
                format!(
                    "unknown option '{}' in [options] (known: UseSyslog, LogFile, PidFile, Interface)",
                    clip(key)
                ),
            );
            return;
        }
    };
    if let Some(&(_, first)) = seen.iter().find(|(k, _)| *k == canonical) {
        diag.at(
            n,
            format!("{canonical} given twice in [options] (first at line {first})"),
        );
        return;
    }
    seen.push((canonical, n));
    let value = match (canonical, value) {
        ("UseSyslog", None) => {
            options.use_syslog = true;
            return;
        }
        ("UseSyslog", Some(_)) => {
            diag.at(n, "UseSyslog stands alone; it takes no value");
            return;
        }
        (_, None) | (_, Some("")) => {
            diag.at(n, format!("{canonical} has no value"));
            return;
        }
        (_, Some(v)) => v,
    };
    match canonical {
        "Interface" => {
            if value.len() > 15 || value.contains(['/', ' ', '\t']) {
                diag.at(
                    n,
                    format!("Interface '{}' is not an interface name", clip(value)),
                );
            } else {
                options.interface = Some(value.to_string());
            }
        }
        _ => {
            let path = PathBuf::from(value);
            if !path.is_absolute() {
                diag.at(
                    n,
                    format!(
                        "{canonical} must be an absolute path, not '{}'",
                        clip(value)
                    ),
                );
            } else if canonical == "LogFile" {
                options.log_file = Some(path);
            } else {
                options.pid_file = Some(path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::knock::flags::{ACK, FIN, SYN};

    fn ok(text: &str) -> Config {
        match config::parse(text.as_bytes(), "k.conf") {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    fn errors(text: impl AsRef<[u8]>) -> Vec<String> {
        match parse(text.as_ref(), "k.conf") {
            Ok(c) => panic!("expected errors, got {c:?}"),
            Err(e) => e.messages,
        }
    }

    fn tcp(port: u16, flags: FlagSpec) -> Step {
        Step {
            proto: Proto::Tcp,
            port,
            flags,
        }
    }

    fn udp(port: u16) -> Step {
        Step {
            proto: Proto::Udp,
            port,
            flags: FlagSpec::Any,
        }
    }

    const SYN_ONLY: FlagSpec = FlagSpec::Mask { set: SYN, clear: 0 };

    #[test]
    fn manual_example_1_two_doors() {
        let c = ok("[options]
     logfile = /var/log/knockd.log

[openSSH]
     sequence    = 7000,8000,9000
     seq_timeout = 10
     tcpflags    = syn
     command     = /sbin/iptables -A INPUT -s %IP% --dport 22 -j ACCEPT

[closeSSH]
     sequence    = 9000,8000,7000
     seq_timeout = 10
     tcpflags    = syn
     command     = /sbin/iptables -D INPUT -s %IP% --dport 22 -j ACCEPT
");
        assert_eq!(c.format, Format::Knockd);
        assert_eq!(
            c.options.log_file.as_deref(),
            Some(std::path::Path::new("/var/log/knockd.log"))
        );
        assert_eq!(c.events.len(), 2);
        let open = &c.events[0];
        assert_eq!(
            (open.name.as_str(), open.line, open.timeout),
            ("openSSH", 4, 10)
        );
        assert_eq!(
            open.sequence,
            [
                tcp(7000, SYN_ONLY),
                tcp(8000, SYN_ONLY),
                tcp(9000, SYN_ONLY)
            ]
        );
        assert_eq!(open.tcp_gate, Some(SYN_ONLY));
        assert_eq!(
            open.start_command,
            "/sbin/iptables -A INPUT -s %IP% --dport 22 -j ACCEPT"
        );
        assert_eq!(
            (open.stop_command.as_ref(), open.command_delay),
            (None, None)
        );
        assert_eq!(c.events[1].sequence[0].port, 9000);
    }

    #[test]
    fn manual_example_2_start_and_stop() {
        let c = ok("[options]
     logfile = /var/log/knockd.log

[opencloseSSH]
     sequence      = 2222:udp,3333:tcp,4444:udp
     seq_timeout   = 15
     tcpflags      = syn,ack
     start_command = /usr/sbin/iptables -A INPUT -s %IP% -p tcp --syn -j ACCEPT
     cmd_timeout   = 5
     stop_command  = /usr/sbin/iptables -D INPUT -s %IP% -p tcp --syn -j ACCEPT
");
        let e = &c.events[0];
        let sa = FlagSpec::Mask {
            set: SYN | ACK,
            clear: 0,
        };
        assert_eq!(e.sequence, [udp(2222), tcp(3333, sa), udp(4444)]);
        assert_eq!(e.timeout, 15);
        assert_eq!(e.command_delay, Some(5));
        assert!(e.stop_command.as_deref().unwrap().contains("-D INPUT"));
    }

    #[test]
    fn manual_examples_3_and_4_one_time_and_ipv6() {
        let c = ok("[options]
     logfile = /var/log/knockd.log

[opencloseSMTP]
     one_time_sequences = /etc/knockd/smtp_sequences
     seq_timeout        = 15
     tcpflags           = fin,!ack
     start_command      = /usr/sbin/iptables -A INPUT -s %IP% -p tcp --dport 25 -j ACCEPT
     start_command_6    = /usr/sbin/ip6tables -A INPUT -s %IP% -p tcp --dport 25 -j ACCEPT
     cmd_timeout        = 5
     stop_command       = /usr/sbin/iptables -D INPUT -s %IP% -p tcp --dport 25 -j ACCEPT
     stop_command_6     = /usr/sbin/ip6tables -D INPUT -s %IP% -p tcp --dport 25 -j ACCEPT
");
        let e = &c.events[0];
        assert!(e.sequence.is_empty(), "filled by load");
        assert_eq!(
            e.one_time.as_deref(),
            Some(std::path::Path::new("/etc/knockd/smtp_sequences"))
        );
        assert_eq!(
            e.tcp_gate,
            Some(FlagSpec::Mask {
                set: FIN,
                clear: ACK
            })
        );
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let v6: IpAddr = "fd00::1".parse().unwrap();
        assert!(e
            .start_for(v4)
            .unwrap()
            .starts_with("/usr/sbin/iptables -A"));
        assert!(e
            .start_for(v6)
            .unwrap()
            .starts_with("/usr/sbin/ip6tables -A"));
        assert!(e
            .stop_for(v6)
            .unwrap()
            .starts_with("/usr/sbin/ip6tables -D"));
        assert_eq!(e.command_delay, Some(5));
    }

    #[test]
    fn defaults_aliases_and_case() {
        let c = ok(
            "# knockd\n[OPTIONS]\nUseSyslog\nINTERFACE = eth1\nPidFile=/run/k.pid\n\
                    [Door]\nSEQUENCE = 1 , 2:UDP ,3: tcp\nCOMMAND = open %IP%\n\
                    Stop_Command = close %IP%\nCommand_6 =\n",
        );
        assert!(c.options.use_syslog);
        assert_eq!(c.options.interface.as_deref(), Some("eth1"));
        assert_eq!(
            c.options.pid_file.as_deref(),
            Some(std::path::Path::new("/run/k.pid"))
        );
        let e = &c.events[0];
        assert_eq!(
            e.sequence,
            [tcp(1, FlagSpec::Any), udp(2), tcp(3, FlagSpec::Any)]
        );
        assert_eq!(e.timeout, DEFAULT_SEQ_TIMEOUT);
        assert_eq!(e.command_delay, Some(DEFAULT_CMD_TIMEOUT));
        assert_eq!(e.tcp_gate, None);
        // Empty Command_6: IPv6 knockers get nothing; the stop falls back.
        let v6: IpAddr = "fd00::1".parse().unwrap();
        assert_eq!(e.start_for(v6), None);
        assert_eq!(e.stop_for(v6), Some("close %IP%"));
    }

    #[test]
    fn tcp_flags_forms() {
        for (text, set, clear) in [
            ("syn", SYN, 0),
            ("SYN,ACK", SYN | ACK, 0),
            ("syn, ack", SYN | ACK, 0),
            ("fin,!ack", FIN, ACK),
            ("fin, ! ack", FIN, ACK),
            ("!syn", 0, SYN),
            ("syn,syn", SYN, 0),
        ] {
            assert_eq!(
                parse_tcp_flags(text),
                Ok(FlagSpec::Mask { set, clear }),
                "{text}"
            );
        }
        for (text, needle) in [
            ("syn,!syn", "both demanded and forbidden"),
            ("syn ack", "unknown flag 'syn ack'"),
            ("ece", "unknown flag"),
            ("syn,", "unknown flag ''"),
            ("!", "unknown flag"),
        ] {
            let e = parse_tcp_flags(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn target_is_an_address() {
        let c = ok("[wol]\nsequence = 1,2\ntarget = 10.0.0.9\ncommand = wake\n");
        assert_eq!(c.events[0].target, Some("10.0.0.9".parse().unwrap()));
        assert_eq!(
            errors("[wol]\nsequence = 1,2\ntarget = host.example\ncommand = wake\n"),
            ["k.conf:3: Target must be one IPv4 or IPv6 address, not 'host.example'"]
        );
    }

    #[test]
    fn errors_name_file_and_line() {
        let text = "sequence = 1\n[options]\nlogfile = rel.log\nfoo = 1\n[a]\nsequence = 0,70000,x:udp,5:icmp\n\
                    seq_timeout = 10s\ncmd_timeout = -1\nbogus = 1\njunk\n[a]\nsequence = 1\n[b]\n\
                    command = x\n[c]\nsequence = 1\none_time_sequences = /x\n[d\n";
        assert_eq!(
            errors(text),
            [
                "k.conf:1: 'sequence = 1' comes before any [section]; directives belong to [options] or an event",
                "k.conf:3: LogFile must be an absolute path, not 'rel.log'",
                "k.conf:4: unknown option 'foo' in [options] (known: UseSyslog, LogFile, PidFile, Interface)",
                "k.conf:6: Sequence: '0', '70000', 'x:udp', '5:icmp' not port[:tcp|udp] with a port from 1 to 65535",
                "k.conf:7: Seq_Timeout must be whole seconds from 1 to 86400, not '10s'",
                "k.conf:8: Cmd_Timeout must be whole seconds from 0 to 2678400, not '-1'",
                "k.conf:9: unknown key 'bogus' in [a] (known keys: Sequence, One_Time_Sequences, Seq_Timeout, TCPFlags, Target, Start_Command (Command), Start_Command_6 (Command_6), Cmd_Timeout, Stop_Command, Stop_Command_6)",
                "k.conf:10: expected 'key = value', got 'junk'",
                "k.conf:11: section name 'a' already used at line 5",
                "k.conf:13: [b] has neither Sequence nor One_Time_Sequences",
                "k.conf:17: [c] has both Sequence and One_Time_Sequences; give one of them",
                "k.conf:18: section header '[d' lacks its closing ']'",
            ]
        );
    }

    #[test]
    fn no_events_is_an_error() {
        assert_eq!(
            errors("[options]\nUseSyslog\n"),
            [
                "k.conf: no events: edit it (an event is a [name] section besides [options]), \
              then check it with tportknockd -C k.conf"
            ]
        );
    }

    #[test]
    fn detection_looks_at_the_first_meaningful_line() {
        use config::detect;
        assert_eq!(detect(b"# c\n\n  [options]\n"), Format::Knockd);
        assert_eq!(detect(b"\xef\xbb\xbf[a]\n"), Format::Knockd);
        assert_eq!(detect(b"<SSH>\n[a]\n"), Format::KnockConf);
        assert_eq!(detect(b""), Format::KnockConf);
        // And the reader skips the mark as detection did.
        let plain = "[a]\nSequence = 1,2\nCommand = x\n";
        assert_eq!(ok(&format!("\u{feff}{plain}")), ok(plain));
    }

    #[test]
    fn hostile_input_never_panics() {
        let seed =
            "[options]\nlogfile=/l\n[a]\nsequence = 1:udp, 2\ntcpflags = syn,!ack\ncommand=x\n";
        let mut rng = crate::testutil::XorShift(0x2545_f491_4f6c_dd1d);
        for round in 0..300 {
            let mut text = seed.as_bytes()[..(round * 5) % seed.len()].to_vec();
            for _ in 0..(round * 31) % 2000 {
                let x = rng.next();
                // Bias towards the format's own punctuation.
                let b = match x % 8 {
                    0 => b"[]=,:!#\n"[(x >> 8) as usize % 8],
                    _ => x as u8,
                };
                text.push(b);
            }
            if let Err(e) = parse(&text, "k.conf") {
                assert!(!e.messages.is_empty());
                assert!(e
                    .messages
                    .iter()
                    .all(|m| m.starts_with("k.conf") && m.len() < 600));
            }
        }
        let long = format!("[a]\nsequence = {}\ncommand = x\n", "1,".repeat(30_000));
        assert_eq!(errors(long).len(), 1);
    }
}

//! `tportknockd -C FILE`: load a config as the daemon would, show what each
//! event does in words, and warn about legal but risky choices.

use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use crate::config::sets::AddrFamily;
use crate::config::{self, find, Config, Event};
use crate::daemon::log::sanitize;
use crate::knock::{flags, FlagSpec, Proto, Step};

pub mod rotating;

/// Checks `path`; the report goes to `out`, errors to `err`. Returns the
/// exit status: 0 for a usable file (warnings or not), 1 otherwise.
pub fn run(path: &Path, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let file = path.display().to_string();
    // Write errors (a closed pipe) cannot change the verdict: ignore them.
    match config::load(path) {
        Err(e) => {
            for msg in &e.messages {
                let _ = writeln!(err, "error: {msg}");
            }
            let n = e.messages.len();
            let _ = writeln!(err, "{file}: invalid, {}", plural(n, "error"));
            1
        }
        Ok(config) => {
            for event in &config.events {
                let _ = describe(event, path, out);
            }
            let warnings = all_warnings(&config, path);
            for w in &warnings {
                let _ = writeln!(out, "warning: {}", sanitize(w));
            }
            let _ = writeln!(
                out,
                "{file}: {}, 0 errors, {}",
                plural(config.events.len(), "event"),
                plural(warnings.len(), "warning")
            );
            0
        }
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// `config` is the file's path, against which a relative `key_file` is read.
fn describe(event: &Event, config: &Path, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "event {} (line {})", event.name, event.line)?;
    if let Some(r) = &event.rotation {
        let key_path = sanitize(&r.key_path(config).display().to_string());
        rotating::describe(
            &r.templates,
            event.timeout,
            r.window,
            Path::new(&key_path),
            out,
        )?;
    }
    if let Some(file) = &event.one_time {
        writeln!(
            out,
            "  one-time sequences from {}",
            sanitize(&file.display().to_string())
        )?;
    }
    if event.rotation.is_some() {
        // Described above.
    } else if event.sequence.is_empty() {
        writeln!(out, "  sequence: none left: event disabled")?;
    } else {
        writeln!(
            out,
            "  sequence: {} within {} s",
            plural(event.sequence.len(), "frame"),
            event.timeout
        )?;
    }
    for (i, step) in event.sequence.iter().enumerate() {
        writeln!(out, "    {}. {}", i + 1, step.describe())?;
    }
    if let Some(FlagSpec::Mask { set, clear }) = event.tcp_gate {
        let names = |bits: u8| -> Vec<&str> {
            flags::LETTERS
                .iter()
                .filter(|(_, bit, _)| bits & bit != 0)
                .map(|(_, _, name)| *name)
                .collect()
        };
        let mut demands = Vec::new();
        if set != 0 {
            demands.push(format!("{} set", names(set).join(" ")));
        }
        if clear != 0 {
            demands.push(format!("{} clear", names(clear).join(" ")));
        }
        writeln!(
            out,
            "  TCPFlags: {}; other TCP frames are ignored, not wrong",
            demands.join(", ")
        )?;
    }
    if let Some(target) = event.target {
        writeln!(
            out,
            "  watches frames to {target} instead of the own addresses"
        )?;
    }
    // Commands are shown as the log shows them: a control character, line
    // separator or bidi override must not reach the terminal raw (it could
    // make a command read differently from what runs).
    let none = |c: &str| {
        if c.is_empty() {
            "none".to_string()
        } else {
            sanitize(c)
        }
    };
    writeln!(out, "  start: {}", none(&event.start_command))?;
    if let Some(cmd6) = &event.start_command_6 {
        writeln!(out, "  start for IPv6: {}", none(cmd6))?;
    }
    match (&event.stop_command, event.command_delay) {
        (Some(stop), Some(delay)) => writeln!(out, "  stop after {delay} s: {}", none(stop))?,
        (None, Some(delay)) if !event.sets.is_empty() => writeln!(
            out,
            "  stop: none (the kernel closes the door after {delay} s)"
        )?,
        _ => writeln!(out, "  stop: none")?,
    }
    if let Some(cmd6) = &event.stop_command_6 {
        match event.command_delay {
            Some(delay) if !cmd6.is_empty() => {
                writeln!(out, "  stop for IPv6 after {delay} s: {}", none(cmd6))?
            }
            _ => writeln!(out, "  stop for IPv6: none")?,
        }
    }
    for (target, family) in event.sets.all() {
        let who = match family {
            AddrFamily::V4 => "IPv4",
            AddrFamily::V6 => "IPv6",
        };
        let delay = event.command_delay.unwrap_or(0);
        writeln!(
            out,
            "  kernel door for {who}: {target}, address kept {delay} s"
        )?;
    }
    if let Some(max) = event.max_doors {
        writeln!(out, "  at most {max} doors open at once")?;
    }
    Ok(())
}

/// Well-known services whose ordinary traffic would hit a knock port.
const TCP_SERVICES: &[(u16, &str)] = &[
    (20, "ftp-data"),
    (21, "ftp"),
    (22, "ssh"),
    (23, "telnet"),
    (25, "smtp"),
    (53, "dns"),
    (80, "http"),
    (110, "pop3"),
    (111, "rpcbind"),
    (123, "ntp"),
    (135, "msrpc"),
    (139, "netbios"),
    (143, "imap"),
    (389, "ldap"),
    (443, "https"),
    (445, "smb"),
    (465, "smtps"),
    (587, "submission"),
    (636, "ldaps"),
    (853, "dns-over-tls"),
    (993, "imaps"),
    (995, "pop3s"),
    (1433, "mssql"),
    (1521, "oracle"),
    (2049, "nfs"),
    (3306, "mysql"),
    (3389, "rdp"),
    (5432, "postgresql"),
    (5900, "vnc"),
    (6379, "redis"),
    (8080, "http-alt"),
    (8443, "https-alt"),
    (27017, "mongodb"),
];

const UDP_SERVICES: &[(u16, &str)] = &[
    (53, "dns"),
    (67, "dhcp"),
    (68, "dhcp"),
    (69, "tftp"),
    (123, "ntp"),
    (137, "netbios-ns"),
    (138, "netbios-dgm"),
    (161, "snmp"),
    (162, "snmptrap"),
    (443, "quic"),
    (500, "ike"),
    (514, "syslog"),
    (1900, "ssdp"),
    (4500, "ipsec-nat-t"),
    (5353, "mdns"),
    (5355, "llmnr"),
];

/// Linux's default `ip_local_port_range`: replies to this host's own
/// outgoing connections arrive on these ports.
const EPHEMERAL: std::ops::RangeInclusive<u16> = 32768..=60999;

/// Flag sets that established or closing TCP connections send all the time.
const CONNECTION_FLAGS: [u8; 6] = [
    flags::ACK,
    flags::PSH | flags::ACK,
    flags::FIN | flags::ACK,
    flags::FIN | flags::PSH | flags::ACK,
    flags::RST,
    flags::RST | flags::ACK,
];

/// Why ordinary traffic would produce `step`; empty if it would not.
fn ordinary_traffic(step: &Step) -> Vec<String> {
    let mut why = Vec::new();
    let services = match step.proto {
        Proto::Tcp => TCP_SERVICES,
        Proto::Udp => UDP_SERVICES,
    };
    if let Some((_, service)) = services.iter().find(|(port, _)| *port == step.port) {
        why.push(format!(
            "{}/{} is a common service port ({service})",
            step.proto, step.port
        ));
    }
    // Could a reply to one of this host's own connections match?
    let reply_like = match (step.proto, step.flags) {
        (Proto::Udp, _) => true,
        (Proto::Tcp, FlagSpec::Any) => {
            why.push("any TCP segment to that port matches".into());
            true
        }
        (Proto::Tcp, FlagSpec::Exact(bits)) => {
            if CONNECTION_FLAGS.contains(&bits) {
                why.push(
                    "established and closing TCP connections send those flags all the time".into(),
                );
            }
            bits & (flags::ACK | flags::RST) != 0
        }
        (Proto::Tcp, spec @ FlagSpec::Mask { .. }) => {
            if CONNECTION_FLAGS.iter().any(|&bits| spec.accepts(bits)) {
                why.push(
                    "established and closing TCP connections send such flags all the time".into(),
                );
            }
            spec.accepts(flags::ACK) || spec.accepts(flags::RST | flags::ACK)
        }
    };
    if EPHEMERAL.contains(&step.port) && reply_like {
        why.push(format!(
            "replies to this host's own connections arrive on ports {}-{} (Linux's default \
             ephemeral range)",
            EPHEMERAL.start(),
            EPHEMERAL.end()
        ));
    }
    why
}

/// Does `a` accept every frame `b` accepts?
fn covers(a: &Step, b: &Step) -> bool {
    a.proto == b.proto
        && a.port == b.port
        && (a.proto == Proto::Udp
            || (0..=flags::CLASSIC).all(|f| !b.flags.accepts(f) || a.flags.accepts(f)))
}

/// Everything `-C` warns about in `config`, loaded from `path`: what the
/// loader noticed, files others can read, and the risky choices of
/// [`warnings`]. The daemon logs the same at start and at each reload.
pub fn all_warnings(config: &Config, path: &Path) -> Vec<String> {
    let mut out = config.warnings.clone();
    out.extend(readable_by_others(path));
    for file in config.events.iter().filter_map(|e| e.one_time.as_deref()) {
        out.extend(readable_by_others(file));
    }
    out.extend(warnings(config, &path.display().to_string()));
    out
}

/// A file of knock sequences that group or others can read gives them
/// away: the sequences are the secret.
pub fn readable_by_others(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let mode = std::fs::metadata(path).ok()?.mode() & 0o7777;
    let p = path.display();
    (mode & 0o044 != 0).then(|| {
        format!(
            "{p} can be read by group or others (mode {mode:04o}): whoever reads it knows \
             the knock sequences; fix: chmod 600 {p}"
        )
    })
}

/// Legal but risky choices, each as `FILE:LINE: message` (the line of the
/// event's opening tag).
pub fn warnings(config: &Config, file: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, event) in config.events.iter().enumerate() {
        let at = |msg: String| format!("{file}:{}: event {} {msg}", event.line, event.name);
        if let Some(r) = &event.rotation {
            out.extend(rotating::warnings(&r.templates).into_iter().map(at));
        }
        if let Some(first) = event.sequence.first() {
            let why = ordinary_traffic(first);
            if let (false, Some(file)) = (why.is_empty(), &event.one_time) {
                // This warning is logged at start and reload: the next
                // line's step stays out of it ([`Event::withheld`]).
                out.push(at(format!(
                    "starts its next one-time sequence (the first unused line of {}) with a \
                     step ordinary traffic can hit (not named here: this warning is logged, \
                     and the line is secret until used); such traffic costs the daemon CPU \
                     and memory and starts or derails knock attempts",
                    file.display()
                )));
            } else if !why.is_empty() {
                out.push(at(format!(
                    "starts with {}, which ordinary traffic can hit: {}; such traffic costs \
                     the daemon CPU and memory and starts or derails knock attempts",
                    first.describe(),
                    why.join("; ")
                )));
            }
        }
        if event.sequence.len() == 1 {
            out.push(at(
                "has a one-frame sequence: a port scan can hit it by chance and anyone who \
                 sees one packet can replay it"
                    .into(),
            ));
        }
        if event.start_for(Ipv4Addr::UNSPECIFIED.into()).is_none()
            && event.start_for(Ipv6Addr::UNSPECIFIED.into()).is_none()
            && event.sets.is_empty()
        {
            out.push(at("runs no command: a knock only shows in the log".into()));
        }
        let v4: std::net::IpAddr = Ipv4Addr::UNSPECIFIED.into();
        let v6: std::net::IpAddr = Ipv6Addr::UNSPECIFIED.into();
        // A start that adds an element with a timeout (nft, ipset) is
        // closed by the kernel.
        let unclosed = [v4, v6]
            .into_iter()
            .filter(|&ip| {
                event
                    .start_for(ip)
                    .is_some_and(|c| find(c, "timeout").is_none())
                    && event.stop_for(ip).is_none()
            })
            .count();
        if unclosed > 0 && event.sets.is_empty() {
            let who = match (unclosed, event.stop_for(v4).is_some()) {
                (2, _) => "",
                (_, true) => " for IPv6 knockers",
                (_, false) => " for IPv4 knockers",
            };
            out.push(at(format!(
                "opens a door that nothing closes{who}: a start_command without a \
                 stop_command and without a kernel set; add stop_command (and \
                 command_delay), unless the start command closes the door itself (as an \
                 nft or ipset element with a timeout does)"
            )));
        }
        let start_has_ip =
            event.start_command.is_empty() || find(&event.start_command, "%IP%").is_some();
        if !start_has_ip {
            out.push(at(
                "has a start_command without %IP%: it does the same whoever knocks \
                 (does it open the door for everyone?)"
                    .into(),
            ));
        }
        if let Some(stop) = &event.stop_command {
            if start_has_ip && find(stop, "%IP%").is_none() {
                out.push(at(
                    "has a stop_command without %IP% although start_command uses it: \
                     it cannot undo what start_command did for that address"
                        .into(),
                ));
            }
        }
        for (j, other) in config.events.iter().enumerate() {
            if i == j
                || event.sequence.is_empty()
                || event.target != other.target
                || event.sequence.len() > other.sequence.len()
            {
                continue;
            }
            if event.sequence == other.sequence {
                if i < j {
                    out.push(at(format!(
                        "has the same sequence as event {} (line {}): one knock runs both",
                        other.name, other.line
                    )));
                }
            } else if event
                .sequence
                .iter()
                .zip(&other.sequence)
                .all(|(a, b)| covers(a, b))
            {
                out.push(at(format!(
                    "is completed by every knock of event {} (line {}): its sequence is a \
                     prefix of that one's",
                    other.name, other.line
                )));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Scratch;
    use std::os::unix::fs::PermissionsExt;

    /// Runs the checker on `text` saved with `mode`: (status, out, err, file name).
    fn check(text: &[u8], mode: u32) -> (i32, String, String, String) {
        let dir = Scratch::new("run");
        let path = dir.file("knock.conf", text, mode);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let status = run(&path, &mut out, &mut err);
        (
            status,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
            path.display().to_string(),
        )
    }

    fn config(text: &str) -> Config {
        match config::parse(text.as_bytes(), "k.conf") {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    /// One event per sequence, named A, B, …, with an %IP% start command.
    fn events(sequences: &[&str]) -> Config {
        let mut text = String::new();
        for (i, seq) in sequences.iter().enumerate() {
            let name = char::from(b'A' + i as u8);
            text += &format!(
                "<{name}>\nsequence = {seq}\ntimeout = 5\nstart_command = open %IP%\n</{name}>\n"
            );
        }
        config(&text)
    }

    /// The warnings about sequences (these events have no stop command:
    /// that warning has its own test).
    fn warn(sequences: &[&str]) -> Vec<String> {
        warnings(&events(sequences), "k.conf")
            .into_iter()
            .filter(|w| !w.contains("nothing closes"))
            .collect()
    }

    #[test]
    fn a_door_that_nothing_closes() {
        let unclosed = |at: &str, who: &str| {
            format!(
                "k.conf:{at}: event A opens a door that nothing closes{who}: a start_command \
                 without a stop_command and without a kernel set; add stop_command (and \
                 command_delay), unless the start command closes the door itself (as an nft \
                 or ipset element with a timeout does)"
            )
        };
        let w = |body: &str| {
            warnings(
                &config(&format!(
                    "<A>\nsequence = tcp:1:s tcp:2:f\ntimeout = 5\n{body}</A>\n"
                )),
                "k.conf",
            )
        };
        assert_eq!(w("start_command = open %IP%\n"), [unclosed("1", "")]);
        assert_eq!(
            w("start_command = open %IP%\nstop_command_6 = close %IP%\ncommand_delay = 5\n"),
            [unclosed("1", " for IPv4 knockers")]
        );
        assert_eq!(
            w("start_command = open %IP%\nstop_command = close %IP%\nstop_command_6 =\ncommand_delay = 5\n"),
            [unclosed("1", " for IPv6 knockers")]
        );
        // Closed by a stop, by the kernel's timeout, or a kernel door.
        for body in [
            "start_command = open %IP%\nstop_command = close %IP%\ncommand_delay = 5\n",
            "start_command = nft add element inet f s { %IP% timeout 30s }\n",
            "start_command = ipset add knocked %IP% timeout 30\n",
            "nft_set = inet filter knocked4\ncommand_delay = 30\n",
        ] {
            assert!(w(body).is_empty(), "{body}: {:?}", w(body));
        }
    }

    #[test]
    fn reports_a_clean_file_in_words() {
        let text =
            "# door\n<SSH>\n sequence = udp:1234 tcp:543 tcp:543:i tcp:123:frap tcp:434:x\n \
                    timeout = 10\n start_command = open %IP%\n stop_command = close %IP%\n \
                    command_delay = 30\n</SSH>\n<Web>\nsequence = tcp:7001:fu udp:8002\n\
                    timeout = 1\nstart_command = web %IP%\n</Web>\n";
        let (status, out, err, name) = check(text.as_bytes(), 0o600);
        assert_eq!(status, 0);
        assert_eq!(err, "");
        assert_eq!(
            out,
            format!(
                "event SSH (line 2)
  sequence: 5 frames within 10 s
    1. udp/1234
    2. tcp/543 with no flags
    3. tcp/543 with any flags
    4. tcp/123 with exactly FIN RST PSH ACK
    5. tcp/434 with exactly FIN SYN RST PSH ACK URG
  start: open %IP%
  stop after 30 s: close %IP%
event Web (line 9)
  sequence: 2 frames within 1 s
    1. tcp/7001 with exactly FIN URG
    2. udp/8002
  start: web %IP%
  stop: none
warning: {name}:9: event Web opens a door that nothing closes: a start_command without a \
stop_command and without a kernel set; add stop_command (and command_delay), unless the start \
command closes the door itself (as an nft or ipset element with a timeout does)
{name}: 2 events, 0 errors, 1 warning
"
            )
        );
    }

    #[test]
    fn describes_kernel_doors() {
        let text = "<K>\nsequence = tcp:7001:fu udp:8002\ntimeout = 5\n\
                    nft_set = inet filter knocked4\nipset_6 = knocked6\ncommand_delay = 30\n</K>\n";
        let (status, out, err, name) = check(text.as_bytes(), 0o600);
        assert_eq!((status, err.as_str()), (0, ""));
        assert_eq!(
            out,
            format!(
                "event K (line 1)
  sequence: 2 frames within 5 s
    1. tcp/7001 with exactly FIN URG
    2. udp/8002
  start: none
  stop: none (the kernel closes the door after 30 s)
  kernel door for IPv4: nftables set 'inet filter knocked4', address kept 30 s
  kernel door for IPv6: ipset 'knocked6', address kept 30 s
{name}: 1 event, 0 errors, 0 warnings
"
            )
        );
    }

    #[test]
    fn describes_a_rotating_event_and_warns_below_32_bits() {
        let dir = Scratch::new("rot");
        let key = "00112233445566778899aabbccddeeff\n";
        dir.file("r.key", key, 0o600);
        let text = "<R>\nsequence = tcp:40000-40999:{s,fs,su} udp:50000-50999\nkey_file = r.key\n\
                    window = 10\ntimeout = 5\nstart_command = open %IP%\n</R>\n";
        let path = dir.file("knock.conf", text, 0o600);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let status = run(&path, &mut out, &mut err);
        let (out, err) = (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        );
        assert_eq!((status, err.as_str()), (0, ""));
        let name = path.display();
        assert_eq!(
            out,
            format!(
                "event R (line 1)
  rotating sequence: 2 frames within 5 s, drawn anew every 10 s from the key in {}
    1. tcp/40000-40999 (1000 ports) with exactly one of: SYN | FIN SYN | SYN URG
    2. udp/50000-50999 (1000 ports)
  guess space: about 22 bits per window; with 3 windows live a guessed sequence opens with a chance of about 1 in 2^20
  start: open %IP%
  stop: none
warning: {name}:1: event R is easy to guess: a guessed sequence opens with a chance of about 1 in 2^20 (about 22 bits per window, 3 windows live), below 1 in 2^32; widen the port ranges, add flag sets or add steps
warning: {name}:1: event R opens a door that nothing closes: a start_command without a stop_command and without a kernel set; add stop_command (and command_delay), unless the start command closes the door itself (as an nft or ipset element with a timeout does)
{name}: 1 event, 0 errors, 2 warnings
",
                dir.0.join("r.key").display()
            )
        );
        assert!(!out.contains("00112233"), "-C never shows the key");
        // The key file is checked as the daemon would: open to others, refused.
        std::fs::set_permissions(dir.0.join("r.key"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(run(&path, &mut out, &mut err), 1);
        let err = String::from_utf8(err).unwrap();
        assert!(
            err.contains("refusing the key") && err.contains("fix: chmod 600"),
            "{err}"
        );
        assert!(!err.contains("00112233"));
    }

    /// The example's commented rotating event, uncommented, is a clean
    /// rotating event of about 46 bits.
    #[test]
    fn the_examples_rotating_event_is_sound() {
        let example = include_str!("../../knock.conf.example");
        let start = example
            .find("#<SSH-rotating>")
            .expect("the rotating example");
        let block: String = example[start..]
            .lines()
            .take_while(|l| l.starts_with('#'))
            .map(|l| l.trim_start_matches('#').to_string() + "\n")
            .collect();
        let c = config(&block);
        let r = c.events[0].rotation.as_ref().unwrap();
        assert_eq!(r.templates.len(), 4);
        let bits = crate::knock::rotate::GuessSpace::of(&r.templates).bits_per_window;
        assert!((46.0..46.5).contains(&bits), "{bits}");
        assert_eq!(rotating::warnings(&r.templates), Vec::<String>::new());
        assert_eq!(warnings(&c, "k.conf"), Vec::<String>::new());
    }

    #[test]
    fn checks_the_example_file() {
        let (status, out, err, name) = check(include_bytes!("../../knock.conf.example"), 0o600);
        assert_eq!(status, 0, "{err}");
        assert_eq!(err, "");
        let events: Vec<&str> = out.lines().filter(|l| l.starts_with("event ")).collect();
        assert_eq!(events.len(), 6, "{out}");
        assert!(events[0].starts_with("event SSH (line "));
        assert!(out.contains("  kernel door for IPv6: nftables set 'inet filter knocked6'"));
        assert!(out.contains("  kernel door for IPv4: ipset 'knocked4', address kept 30 s"));
        let warnings: Vec<&str> = out.lines().filter(|l| l.starts_with("warning: ")).collect();
        assert_eq!(warnings.len(), 3, "{out}");
        assert!(warnings[0].contains(
            "event OpenVPN starts with tcp/12430 with exactly ACK, which ordinary traffic can hit"
        ));
        assert!(warnings[1].contains("event OpenVPN opens a door that nothing closes"));
        assert!(warnings[2].contains(
            "event SSH2 starts with tcp/110 with exactly FIN SYN RST PSH ACK URG, which ordinary \
             traffic can hit: tcp/110 is a common service port (pop3)"
        ));
        assert!(out.ends_with(&format!("{name}: 6 events, 0 errors, 3 warnings\n")));
    }

    #[test]
    fn invalid_file_prints_every_error_and_fails() {
        let text = b"junk\n<A>\nsequence = tcp:0\n</A>\n<B>\n";
        let (status, out, err, name) = check(text, 0o600);
        assert_eq!(status, 1);
        assert_eq!(out, "");
        assert_eq!(
            err,
            format!(
                "error: {name}:1: 'junk' is outside any <NAME> … </NAME> block
error: {name}:3: sequence: frame 'tcp:0': port must be a number from 1 to 65535, not '0'
error: {name}:2: event <A> has no timeout; sequence, timeout and start_command are required
error: {name}:2: event <A> has no start_command; sequence, timeout and start_command are required
error: {name}:5: <B> is never closed (missing </B>)
{name}: invalid, 5 errors
"
            )
        );
    }

    #[test]
    fn refuses_a_writable_file_and_says_how_to_fix_it() {
        let text = include_bytes!("../../knock.conf.example");
        let (status, out, err, name) = check(text, 0o666);
        assert_eq!(status, 1);
        assert_eq!(out, "");
        assert!(
            err.starts_with(&format!("error: {name}: refusing to load: ")),
            "{err}"
        );
        assert!(err.contains(&format!("fix: chmod go-w {name}\n")), "{err}");
        assert!(
            err.ends_with(&format!("{name}: invalid, 1 error\n")),
            "{err}"
        );
    }

    #[test]
    fn missing_file_fails() {
        let dir = Scratch::new("missing");
        let path = dir.0.join("nope.conf");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(run(&path, &mut out, &mut err), 1);
        let err = String::from_utf8(err).unwrap();
        assert!(
            err.starts_with(&format!("error: {}: cannot open: ", path.display())),
            "{err}"
        );
    }

    #[test]
    fn first_frames_from_ordinary_traffic() {
        let tail = "such traffic costs the daemon CPU and memory and starts or derails knock \
                    attempts";
        for (seq, why) in [
            (
                "tcp:12430:a tcp:2:f",
                "tcp/12430 with exactly ACK, which ordinary traffic can hit: established and \
                 closing TCP connections send those flags all the time",
            ),
            (
                "tcp:9999:pa tcp:2:f",
                "tcp/9999 with exactly PSH ACK, which ordinary traffic can hit: established \
                 and closing TCP connections send those flags all the time",
            ),
            (
                "tcp:9999:i tcp:2:f",
                "tcp/9999 with any flags, which ordinary traffic can hit: any TCP segment to \
                 that port matches",
            ),
            (
                "tcp:22:s tcp:2:f",
                "tcp/22 with exactly SYN, which ordinary traffic can hit: tcp/22 is a common \
                 service port (ssh)",
            ),
            (
                "tcp:443:fu tcp:2:f",
                "tcp/443 with exactly FIN URG, which ordinary traffic can hit: tcp/443 is a \
                 common service port (https)",
            ),
            (
                "udp:53 tcp:2:f",
                "udp/53, which ordinary traffic can hit: udp/53 is a common service port (dns)",
            ),
            (
                "udp:40000 tcp:2:f",
                "udp/40000, which ordinary traffic can hit: replies to this host's own \
                 connections arrive on ports 32768-60999 (Linux's default ephemeral range)",
            ),
            (
                "tcp:40000:sa tcp:2:f",
                "tcp/40000 with exactly SYN ACK, which ordinary traffic can hit: replies to \
                 this host's own connections arrive on ports 32768-60999 (Linux's default ephemeral range)",
            ),
            (
                "tcp:8080:i tcp:2:f",
                "tcp/8080 with any flags, which ordinary traffic can hit: tcp/8080 is a common \
                 service port (http-alt); any TCP segment to that port matches",
            ),
        ] {
            assert_eq!(
                warn(&[seq]),
                [format!("k.conf:1: event A starts with {why}; {tail}")],
                "{seq}"
            );
        }
        // Rare flags on an uncommon port, a SYN to an ephemeral port (never a
        // reply), and risky frames after the first are all fine.
        for seq in [
            "tcp:7001:fu udp:8002",
            "tcp:40000:s tcp:2:f",
            "udp:1234 tcp:22:a tcp:80:i udp:53",
            "tcp:2:n tcp:1:x",
        ] {
            assert_eq!(warn(&[seq]), Vec::<String>::new(), "{seq}");
        }
    }

    /// The warning is logged at start and reload: for a one-time event it
    /// names the file, not the next line's step.
    #[test]
    fn a_one_time_first_step_from_ordinary_traffic_is_not_named() {
        let mut c = events(&["tcp:22:s tcp:2:f"]);
        c.events[0].one_time = Some("/etc/knockd/otp".into());
        let w: Vec<String> = warnings(&c, "k.conf")
            .into_iter()
            .filter(|w| !w.contains("nothing closes"))
            .collect();
        assert_eq!(
            w,
            [
                "k.conf:1: event A starts its next one-time sequence (the first unused line of \
              /etc/knockd/otp) with a step ordinary traffic can hit (not named here: this \
              warning is logged, and the line is secret until used); such traffic costs the \
              daemon CPU and memory and starts or derails knock attempts"
            ]
        );
        assert!(!w[0].contains("22") && !w[0].contains("ssh"), "{w:?}");
    }

    #[test]
    fn prefixes_and_equal_sequences() {
        assert_eq!(
            warn(&["tcp:1:s tcp:2:f tcp:3:u", "tcp:1:s tcp:2:f"]),
            [
                "k.conf:6: event B is completed by every knock of event A (line 1): its sequence \
              is a prefix of that one's"
            ]
        );
        assert_eq!(
            warn(&["tcp:1:s tcp:2:f", "udp:9 tcp:3:u", "tcp:1:s tcp:2:f"]),
            ["k.conf:1: event A has the same sequence as event C (line 11): one knock runs both"]
        );
        // `i` accepts the exact flags of the other event's frame.
        assert_eq!(
            warn(&["tcp:1:s tcp:2:i", "tcp:1:s tcp:2:f tcp:5:u"]),
            [
                "k.conf:1: event A is completed by every knock of event B (line 6): its sequence \
              is a prefix of that one's"
            ]
        );
        // Same ports, different flags, or a shared tail: no warning.
        assert!(warn(&["tcp:1:s tcp:2:f", "tcp:1:s tcp:2:u tcp:3:f"]).is_empty());
        assert!(warn(&["tcp:1:s tcp:2:f", "tcp:5:s tcp:1:s tcp:2:f"]).is_empty());
    }

    #[test]
    fn one_frame_sequence() {
        assert_eq!(
            warn(&["tcp:7001:fu"]),
            [
                "k.conf:1: event A has a one-frame sequence: a port scan can hit it by chance and \
              anyone who sees one packet can replay it"
            ]
        );
    }

    #[test]
    fn commands_without_the_address() {
        let text = "<A>\nsequence = tcp:1:s tcp:2:f\ntimeout = 5\nstart_command = open all\n</A>\n\
                    <B>\nsequence = tcp:3:s tcp:4:f\ntimeout = 5\nstart_command = open %IP%\n\
                    stop_command = close all\ncommand_delay = 3\n</B>\n\
                    <C>\nsequence = tcp:5:s tcp:6:f\ntimeout = 5\nstart_command = on\n\
                    stop_command = off\ncommand_delay = 3\n</C>\n";
        assert_eq!(
            warnings(&config(text), "k.conf"),
            [
                "k.conf:1: event A opens a door that nothing closes: a start_command without a \
                 stop_command and without a kernel set; add stop_command (and command_delay), \
                 unless the start command closes the door itself (as an nft or ipset element \
                 with a timeout does)",
                "k.conf:1: event A has a start_command without %IP%: it does the same whoever \
                 knocks (does it open the door for everyone?)",
                "k.conf:6: event B has a stop_command without %IP% although start_command uses \
                 it: it cannot undo what start_command did for that address",
                "k.conf:13: event C has a start_command without %IP%: it does the same whoever \
                 knocks (does it open the door for everyone?)",
            ]
        );
    }

    #[test]
    fn warnings_do_not_change_the_status() {
        let text = b"<A>\nsequence = tcp:22:s\ntimeout = 5\nstart_command = open\n</A>\n";
        let (status, out, err, name) = check(text, 0o644);
        assert_eq!((status, err.as_str()), (0, ""));
        assert_eq!(
            out.lines().filter(|l| l.starts_with("warning: ")).count(),
            5,
            "{out}"
        );
        assert!(out.ends_with(&format!("{name}: 1 event, 0 errors, 5 warnings\n")));
    }

    #[test]
    fn a_file_others_can_read_gets_a_warning_naming_chmod_600() {
        let text = b"<A>\nsequence = tcp:1:s tcp:2:f\ntimeout = 5\nstart_command = o %IP%\n\
                     stop_command = c %IP%\ncommand_delay = 5\n</A>\n";
        for (mode, warned) in [(0o600, false), (0o400, false), (0o640, true), (0o604, true)] {
            let (status, out, _, name) = check(text, mode);
            assert_eq!(status, 0);
            let want = format!(
                "warning: {name} can be read by group or others (mode {mode:04o}): whoever \
                 reads it knows the knock sequences; fix: chmod 600 {name}\n"
            );
            assert_eq!(out.contains(&want), warned, "{mode:o}: {out}");
        }
    }

    // The fixtures under tests/check_cli_fixtures/ are for end-to-end tests
    // of `tportknockd -C`; these keep their README honest.

    #[test]
    fn fixture_valid() {
        let (status, out, err, name) = check(
            include_bytes!("../../tests/check_cli_fixtures/valid.conf"),
            0o600,
        );
        assert_eq!((status, err.as_str()), (0, ""));
        assert!(out.starts_with("event SSH (line 2)\n"), "{out}");
        assert!(out.ends_with(&format!("{name}: 2 events, 0 errors, 0 warnings\n")));
    }

    #[test]
    fn fixture_warnings() {
        let (status, out, err, name) = check(
            include_bytes!("../../tests/check_cli_fixtures/warnings.conf"),
            0o600,
        );
        assert_eq!((status, err.as_str()), (0, ""));
        let warnings: Vec<&str> = out.lines().filter(|l| l.starts_with("warning: ")).collect();
        let want = [
            format!("warning: {name}:2: event Web starts with tcp/80 with exactly SYN"),
            format!("warning: {name}:2: event Web has a stop_command without %IP%"),
            format!("warning: {name}:9: event Short has a one-frame sequence"),
            format!("warning: {name}:9: event Short opens a door that nothing closes"),
            format!("warning: {name}:9: event Short is completed by every knock of event Longer (line 14)"),
            format!("warning: {name}:14: event Longer opens a door that nothing closes"),
        ];
        assert_eq!(warnings.len(), want.len(), "{out}");
        for (got, want) in warnings.iter().zip(&want) {
            assert!(got.starts_with(want.as_str()), "{got}\n{want}");
        }
        assert!(out.ends_with(&format!("{name}: 3 events, 0 errors, 6 warnings\n")));
    }

    #[test]
    fn fixture_invalid() {
        let (status, out, err, name) = check(
            include_bytes!("../../tests/check_cli_fixtures/invalid.conf"),
            0o600,
        );
        assert_eq!((status, out.as_str()), (1, ""));
        assert_eq!(
            err,
            format!(
                "error: {name}:2: sequence: frame 'tcp:0': port must be a number from 1 to 65535, not '0'
error: {name}:2: sequence: frame 'tcp:5:q': unknown flag 'q' (known: f s r p a u, or one of x n i)
error: {name}:3: timeout must be whole seconds from 1 to 86400 (one day), not '0'
error: {name}:6: line is not text (invalid UTF-8 at byte 1)
error: {name}:8: event name 'SSH' already used by <SSH> at line 1
error: {name}:13: 'oops = 1' is outside any <NAME> … </NAME> block
{name}: invalid, 6 errors
"
            )
        );
    }

    #[test]
    fn commands_are_shown_escaped_like_the_log() {
        let dir = Scratch::new("check-escape");
        let f = dir.file(
            "k.conf",
            "<SSH>\nsequence = tcp:7000:s udp:7001\ntimeout = 5\n\
             start_command = echo \u{202e}evil\u{2028}x\n\
             stop_command = echo \u{202e}undo\ncommand_delay = 3\nmax_doors = 7\n</SSH>\n",
            0o600,
        );
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(run(&f, &mut out, &mut err), 0);
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains("start: echo \\u{202e}evil\\u{2028}x\n"),
            "{out}"
        );
        assert!(out.contains("stop after 3 s: echo \\u{202e}undo"), "{out}");
        assert!(out.contains("at most 7 doors open at once"), "{out}");
        assert!(
            !out.contains('\u{202e}') && !out.contains('\u{2028}'),
            "{out}"
        );
    }

    #[test]
    fn an_ipv6_start_without_an_ipv6_stop_is_an_error_naming_the_fix() {
        let dir = Scratch::new("check-v6stop");
        let knock = dir.file(
            "k.conf",
            "<SMTP>\nsequence = tcp:7000:s\ntimeout = 5\n\
             start_command = iptables -I INPUT -s %IP% -j ACCEPT\n\
             start_command_6 = ip6tables -I INPUT -s %IP% -j ACCEPT\n\
             stop_command = iptables -D INPUT -s %IP% -j ACCEPT\ncommand_delay = 3\n</SMTP>\n",
            0o600,
        );
        let knockd = dir.file(
            "knockd.conf",
            "[SMTP]\nsequence = 7000\ncommand = iptables -I INPUT -s %IP% -j ACCEPT\n\
             command_6 = ip6tables -I INPUT -s %IP% -j ACCEPT\n\
             stop_command = iptables -D INPUT -s %IP% -j ACCEPT\ncmd_timeout = 3\n",
            0o600,
        );
        for (f, key) in [(&knock, "stop_command_6"), (&knockd, "Stop_Command_6")] {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            assert_eq!(run(f, &mut out, &mut err), 1);
            let err = String::from_utf8(err).unwrap();
            assert!(err.contains(&format!("add {key}")), "{err}");
            assert!(err.contains("would stay open"), "{err}");
            // The daemon refuses it too (the same loader).
            assert!(config::load(f).is_err());
        }
        // An explicit stop_command_6, even empty, or an empty
        // start_command_6 is a decision: accepted.
        for extra in [
            "stop_command_6 = ip6tables -D INPUT -s %IP% -j ACCEPT\n",
            "stop_command_6 =\n",
        ] {
            let text = std::fs::read_to_string(&knock).unwrap().replace(
                "command_delay = 3\n",
                &format!("command_delay = 3\n{extra}"),
            );
            let f = dir.file("ok.conf", text, 0o600);
            assert!(config::load(&f).is_ok(), "{extra}");
        }
    }
}

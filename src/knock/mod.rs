//! The vocabulary shared by every stage: protocols, TCP flag sets, sequence
//! steps (`tcp:123:frap`) and the decoded knock a frame turns into.

pub mod matcher;
pub mod matchset;
pub mod rotate;
pub mod rotor;
pub mod source;
pub(crate) mod table;
pub mod template;

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Transport protocol of a knock frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    /// TCP: a step can also demand flags.
    Tcp,
    /// UDP: a step is the port alone.
    Udp,
}

impl Proto {
    /// IP protocol number.
    pub const fn number(self) -> u8 {
        match self {
            Proto::Tcp => crate::wire::ip_proto::TCP,
            Proto::Udp => crate::wire::ip_proto::UDP,
        }
    }

    /// The lower-case name that configs, steps (`tcp:123`) and logs use.
    pub const fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The six classic TCP flags as bits of the TCP flag byte. ECE, CWR and NS
/// are deliberately absent: they never take part in matching.
pub mod flags {
    /// Letter `f`: the sender has no more data.
    pub const FIN: u8 = 0x01;
    /// Letter `s`: opens a connection; what a plain knock sends.
    pub const SYN: u8 = 0x02;
    /// Letter `r`: aborts a connection.
    pub const RST: u8 = 0x04;
    /// Letter `p`: deliver the data at once.
    pub const PSH: u8 = 0x08;
    /// Letter `a`: the acknowledgment number is valid; every segment of an
    /// established connection carries it.
    pub const ACK: u8 = 0x10;
    /// Letter `u`: the urgent pointer is valid; rare in ordinary traffic.
    pub const URG: u8 = 0x20;
    /// All six classic flags; mask a raw flag byte with this before comparing.
    pub const CLASSIC: u8 = 0x3f;

    /// (config letter, bit, name) in the order flags are printed.
    pub const LETTERS: [(char, u8, &str); 6] = [
        ('f', FIN, "FIN"),
        ('s', SYN, "SYN"),
        ('r', RST, "RST"),
        ('p', PSH, "PSH"),
        ('a', ACK, "ACK"),
        ('u', URG, "URG"),
    ];
}

/// What a step demands of a TCP frame's flags. (`Ord`: an arbitrary but
/// total order, by which the matcher finds unchanged events on reload.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FlagSpec {
    /// The six classic flags must equal these bits exactly (`n` is `Exact(0)`,
    /// `x` is `Exact(CLASSIC)`).
    Exact(u8),
    /// `i`: any flags.
    Any,
    /// knockd's `TCPFlags`: the bits of `set` must be set and those of
    /// `clear` clear; the other classic flags do not matter.
    Mask {
        /// The flags that must be set.
        set: u8,
        /// The flags that must be clear; never one of `set`'s.
        clear: u8,
    },
}

impl FlagSpec {
    /// Whether a TCP frame whose flag byte is `raw_flags` satisfies this.
    /// Only the classic flags count: ECE and CWR never do.
    pub fn accepts(self, raw_flags: u8) -> bool {
        match self {
            FlagSpec::Exact(bits) => raw_flags & flags::CLASSIC == bits,
            FlagSpec::Any => true,
            FlagSpec::Mask { set, clear } => raw_flags & (set | clear) == set,
        }
    }
}

/// Names of the classic flags in `bits` (`FIN`, `SYN`, …), in print order.
pub fn flag_names(bits: u8) -> Vec<&'static str> {
    flags::LETTERS
        .iter()
        .filter(|(_, bit, _)| bits & bit != 0)
        .map(|(_, _, name)| *name)
        .collect()
}

/// One frame of a knock sequence: `protocol:port[:flags]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Step {
    /// The protocol the frame must use.
    pub proto: Proto,
    /// The destination port the frame must go to.
    pub port: u16,
    /// Ignored for UDP, where it is always `Any`.
    pub flags: FlagSpec,
}

impl Step {
    /// Does a frame of this protocol, destination port and raw TCP flag byte
    /// satisfy the step?
    #[inline]
    pub fn matches(&self, proto: Proto, port: u16, raw_flags: u8) -> bool {
        self.proto == proto
            && self.port == port
            && (proto == Proto::Udp || self.flags.accepts(raw_flags))
    }

    /// The step in words, e.g. `tcp/123 with exactly FIN RST PSH ACK`.
    pub fn describe(&self) -> String {
        match (self.proto, self.flags) {
            (Proto::Udp, _) => format!("udp/{}", self.port),
            (Proto::Tcp, FlagSpec::Any) => format!("tcp/{} with any flags", self.port),
            (Proto::Tcp, FlagSpec::Exact(0)) => format!("tcp/{} with no flags", self.port),
            (Proto::Tcp, FlagSpec::Exact(bits)) => {
                format!(
                    "tcp/{} with exactly {}",
                    self.port,
                    flag_names(bits).join(" ")
                )
            }
            (Proto::Tcp, FlagSpec::Mask { set, clear }) => {
                let mut text = format!("tcp/{}", self.port);
                if set != 0 {
                    text += &format!(" with {}", flag_names(set).join(" "));
                }
                if clear != 0 {
                    text += &format!(" without {}", flag_names(clear).join(" "));
                }
                if set | clear == 0 {
                    text += " with any flags";
                }
                text
            }
        }
    }
}

/// Canonical config spelling: `udp:1234`, `tcp:123:frap`, `tcp:434:x`.
/// knockd's masks, which knock.conf cannot express, print as the set
/// letters, `!`, the clear letters: `tcp:25:f!a`.
impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.proto, self.port)?;
        if self.proto == Proto::Tcp {
            match self.flags {
                FlagSpec::Any => f.write_str(":i")?,
                FlagSpec::Exact(0) => f.write_str(":n")?,
                FlagSpec::Exact(flags::CLASSIC) => f.write_str(":x")?,
                FlagSpec::Exact(bits) => {
                    f.write_str(":")?;
                    write_letters(f, bits)?;
                }
                FlagSpec::Mask { set, clear } => {
                    f.write_str(":")?;
                    write_letters(f, set)?;
                    f.write_str("!")?;
                    write_letters(f, clear)?;
                }
            }
        }
        Ok(())
    }
}

fn write_letters(f: &mut fmt::Formatter<'_>, bits: u8) -> fmt::Result {
    for (letter, bit, _) in flags::LETTERS {
        if bits & bit != 0 {
            write!(f, "{letter}")?;
        }
    }
    Ok(())
}

/// Why a step did not parse; the text is meant for `FILE:LINE: ` prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError(pub String);

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StepError {}

impl FromStr for Step {
    type Err = StepError;

    fn from_str(text: &str) -> Result<Step, StepError> {
        let err = |msg: String| Err(StepError(format!("frame '{}': {msg}", text.escape_debug())));
        let mut parts = text.split(':');
        let proto_text = parts.next().unwrap_or("");
        let proto = if proto_text.eq_ignore_ascii_case("tcp") {
            Proto::Tcp
        } else if proto_text.eq_ignore_ascii_case("udp") {
            Proto::Udp
        } else {
            return err(format!(
                "protocol must be tcp or udp, not '{}'",
                proto_text.escape_debug()
            ));
        };
        let Some(port_text) = parts.next() else {
            return err("expected protocol:port[:flags]".into());
        };
        let port = match port_text.parse::<u16>() {
            Ok(p) if p >= 1 && port_text.bytes().all(|b| b.is_ascii_digit()) => p,
            _ => {
                return err(format!(
                    "port must be a number from 1 to 65535, not '{}'",
                    port_text.escape_debug()
                ))
            }
        };
        let flag_text = parts.next();
        if parts.next().is_some() {
            return err("too many ':' (expected protocol:port[:flags])".into());
        }
        let flags = match (proto, flag_text) {
            (Proto::Udp, None) => FlagSpec::Any,
            (Proto::Udp, Some(_)) => return err("udp frames take no flags".into()),
            (Proto::Tcp, None) => FlagSpec::Exact(0),
            (Proto::Tcp, Some(letters)) => match parse_flags(letters) {
                Ok(spec) => spec,
                Err(msg) => return err(msg),
            },
        };
        Ok(Step { proto, port, flags })
    }
}

fn parse_flags(letters: &str) -> Result<FlagSpec, String> {
    if letters.is_empty() {
        return Err("empty flag list after ':' (use n for no flags)".into());
    }
    let mut bits = 0u8;
    let mut special: Option<char> = None;
    let mut count = 0usize;
    for c in letters.chars() {
        count += 1;
        let lower = c.to_ascii_lowercase();
        match lower {
            'x' | 'n' | 'i' => {
                if special.is_some() {
                    return Err(format!("flag '{c}' must stand alone"));
                }
                special = Some(lower);
            }
            _ => {
                let Some((_, bit, _)) = flags::LETTERS.iter().find(|(l, _, _)| *l == lower) else {
                    return Err(format!(
                        "unknown flag '{}' (known: f s r p a u, or one of x n i)",
                        c.escape_debug()
                    ));
                };
                if bits & bit != 0 {
                    return Err(format!("flag '{c}' repeated"));
                }
                bits |= bit;
            }
        }
    }
    match special {
        Some(s) if count > 1 => Err(format!("flag '{s}' must stand alone")),
        Some('x') => Ok(FlagSpec::Exact(flags::CLASSIC)),
        Some('n') => Ok(FlagSpec::Exact(0)),
        Some(_) => Ok(FlagSpec::Any),
        None => Ok(FlagSpec::Exact(bits)),
    }
}

/// What the decoder makes of one captured frame that could be a knock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Knock {
    /// The knocker: the frame's IP source, as it claims it (spoofable, so a
    /// door opens for an address, never for a person).
    pub src: IpAddr,
    /// The frame's IP destination: events see it when it is an own
    /// address, or the knockd `Target` they watch.
    pub dst: IpAddr,
    /// The frame's transport protocol.
    pub proto: Proto,
    /// The port knocked on.
    pub dst_port: u16,
    /// Raw TCP flag byte (low 8 bits of the flags field); 0 for UDP.
    pub flags: u8,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(s: &str) -> Step {
        s.parse().unwrap()
    }

    #[test]
    fn parses_every_flag_letter() {
        for (letter, bit, _) in flags::LETTERS {
            assert_eq!(step(&format!("tcp:1:{letter}")).flags, FlagSpec::Exact(bit));
            let upper = letter.to_ascii_uppercase();
            assert_eq!(step(&format!("TCP:1:{upper}")).flags, FlagSpec::Exact(bit));
        }
        assert_eq!(step("tcp:1:x").flags, FlagSpec::Exact(flags::CLASSIC));
        assert_eq!(step("tcp:1:n").flags, FlagSpec::Exact(0));
        assert_eq!(step("tcp:1:I").flags, FlagSpec::Any);
        assert_eq!(step("tcp:1").flags, FlagSpec::Exact(0));
        assert_eq!(
            step("tcp:123:frap").flags,
            FlagSpec::Exact(flags::FIN | flags::RST | flags::ACK | flags::PSH)
        );
        assert_eq!(
            step("udp:1234"),
            Step {
                proto: Proto::Udp,
                port: 1234,
                flags: FlagSpec::Any
            }
        );
    }

    #[test]
    fn rejects_bad_steps() {
        for (text, needle) in [
            ("icmp:1", "protocol must be tcp or udp"),
            ("tcp", "expected protocol:port"),
            ("tcp:0", "port must be"),
            ("tcp:65536", "port must be"),
            ("tcp:+5", "port must be"),
            ("tcp:", "port must be"),
            ("tcp:1:ff", "repeated"),
            ("tcp:1:xs", "must stand alone"),
            ("tcp:1:sn", "must stand alone"),
            ("tcp:1:ii", "must stand alone"),
            ("tcp:1:q", "unknown flag"),
            ("tcp:1:", "empty flag list"),
            ("udp:1:s", "udp frames take no flags"),
            ("tcp:1:s:2", "too many"),
        ] {
            let e = text.parse::<Step>().unwrap_err();
            assert!(e.0.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "udp:1234",
            "tcp:543:n",
            "tcp:543:i",
            "tcp:123:frap",
            "tcp:434:x",
            "tcp:1:su",
        ] {
            let s = step(text);
            assert_eq!(step(&s.to_string()), s);
        }
        assert_eq!(step("tcp:123:paRF").to_string(), "tcp:123:frpa");
    }

    #[test]
    fn describes_in_words() {
        assert_eq!(
            step("tcp:123:frap").describe(),
            "tcp/123 with exactly FIN RST PSH ACK"
        );
        assert_eq!(step("tcp:1:n").describe(), "tcp/1 with no flags");
        assert_eq!(step("tcp:1:i").describe(), "tcp/1 with any flags");
        assert_eq!(step("udp:9").describe(), "udp/9");
    }

    #[test]
    fn matching_ignores_ece_cwr_and_udp_flags() {
        let s = step("tcp:80:s");
        assert!(s.matches(Proto::Tcp, 80, flags::SYN | 0x40 | 0x80));
        assert!(!s.matches(Proto::Tcp, 80, flags::SYN | flags::ACK));
        assert!(!s.matches(Proto::Tcp, 81, flags::SYN));
        assert!(!s.matches(Proto::Udp, 80, 0));
        assert!(step("udp:80").matches(Proto::Udp, 80, 0xff));
        assert!(step("tcp:80:x").matches(Proto::Tcp, 80, 0xff));
        assert!(step("tcp:80:n").matches(Proto::Tcp, 80, 0xc0));
    }

    #[test]
    fn masks_match_set_and_clear_bits_only() {
        let s = Step {
            proto: Proto::Tcp,
            port: 25,
            flags: FlagSpec::Mask {
                set: flags::FIN,
                clear: flags::ACK,
            },
        };
        assert!(s.matches(Proto::Tcp, 25, flags::FIN));
        assert!(s.matches(Proto::Tcp, 25, flags::FIN | flags::PSH | flags::URG));
        assert!(!s.matches(Proto::Tcp, 25, flags::FIN | flags::ACK));
        assert!(!s.matches(Proto::Tcp, 25, flags::SYN));
        assert_eq!(s.to_string(), "tcp:25:f!a");
        assert_eq!(s.describe(), "tcp/25 with FIN without ACK");
        let any = FlagSpec::Mask { set: 0, clear: 0 };
        assert!(any.accepts(0) && any.accepts(0xff));
    }
}

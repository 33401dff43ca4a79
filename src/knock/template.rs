//! Step templates of rotating sequences: what a step may be, from which
//! the window's concrete [`Step`] is drawn ([`super::rotate`]).
//!
//! ```text
//! tcp:40000-40999:s          any port of the range, exactly SYN
//! tcp:40000-40999:{s,fs,sr}  any port of the range, one of three flag sets
//! udp:50000-50999            any port of the range
//! tcp:22:s                   a fixed step, as in a plain sequence
//! ```
//!
//! The ports are `N` or `N-M` (N <= M, both 1 to 65535). The flags are
//! those of a plain step (letters, `x`, `n`, `i`), or a set in braces of
//! 2 to [`MAX_FLAG_SET`] exact combinations (letters, `x` or `n`; not `i`,
//! which is no combination), told apart by their bits, so `{fs,sf}` is a
//! repeat. The set is kept sorted by the flag byte's value (FIN = 1, SYN = 2,
//! RST = 4, PSH = 8, ACK = 16, URG = 32): that order, not the written one,
//! numbers the choices, so `{sr,s,fs}` and `{s,fs,sr}` derive the same steps.
//!
//! Every part is checked by the plain step parser ([`Step`]'s `FromStr`),
//! called on the template with each end of the range and each combination
//! put in, so templates and plain steps accept and refuse the same letters
//! and ports with the same words.

use std::fmt;
use std::str::FromStr;

use super::{flags, FlagSpec, Proto, Step, StepError};

/// Most flag combinations in one set: beyond 16 a set adds at most 2 bits
/// over 4, and is close to `i`, which accepts whatever ordinary traffic sends.
pub const MAX_FLAG_SET: usize = 16;

/// What a set of fewer than two combinations is told.
const NEEDS_TWO: &str = "a set of flag combinations needs at least two, e.g. {s,fs}; one \
                         alone is written without braces";

/// Longest template text: a full set of combinations with a port range.
pub const MAX_TEMPLATE_TEXT: usize = 128;

/// An inclusive range of ports.
///
/// Invariant: `1 <= first <= last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    first: u16,
    last: u16,
}

impl PortRange {
    /// The ports `first..=last`; `None` if port 0 is in it or it is backwards.
    pub fn new(first: u16, last: u16) -> Option<PortRange> {
        (first >= 1 && first <= last).then_some(PortRange { first, last })
    }

    /// The lowest port.
    pub fn first(self) -> u16 {
        self.first
    }

    /// The highest port.
    pub fn last(self) -> u16 {
        self.last
    }

    /// How many ports: 1 to 65535.
    pub fn len(self) -> u32 {
        u32::from(self.last - self.first) + 1
    }

    /// Always false (a range holds at least one port); for clippy's sake.
    pub fn is_empty(self) -> bool {
        false
    }

    /// Is `port` in the range?
    pub fn contains(self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// What a template demands of the flags of its TCP frames.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TemplateFlags {
    /// The same demand in every window, as in a plain step (always
    /// `FlagSpec::Any` for UDP).
    Fixed(FlagSpec),
    /// One of these exact combinations, drawn per window.
    ///
    /// Invariant: 2 to `MAX_FLAG_SET` entries, strictly ascending, each a
    /// subset of `flags::CLASSIC`.
    OneOf(Vec<u8>),
}

impl TemplateFlags {
    /// How many flag choices: 1 for `Fixed`.
    pub fn count(&self) -> u32 {
        match self {
            TemplateFlags::Fixed(_) => 1,
            TemplateFlags::OneOf(set) => set.len() as u32,
        }
    }

    /// Choice `i` (below `count()`).
    fn choice(&self, i: u32) -> FlagSpec {
        match self {
            TemplateFlags::Fixed(spec) => *spec,
            TemplateFlags::OneOf(set) => FlagSpec::Exact(set[i as usize]),
        }
    }
}

/// One step of a rotating sequence: a protocol, a port range and flags to
/// choose from.
///
/// Invariant: UDP templates have `Fixed(FlagSpec::Any)`; `choices()` is at
/// most 65535 * `MAX_FLAG_SET`, far below 2^32.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Template {
    proto: Proto,
    ports: PortRange,
    flags: TemplateFlags,
}

impl Template {
    /// The protocol of every frame.
    pub fn proto(&self) -> Proto {
        self.proto
    }

    /// The ports a frame may go to: what the kernel filter must pass.
    pub fn ports(&self) -> PortRange {
        self.ports
    }

    /// The flag demand or set.
    pub fn flags(&self) -> &TemplateFlags {
        &self.flags
    }

    /// How many concrete steps the template stands for: ports times flag
    /// choices. At least 1 (a fixed step).
    pub fn choices(&self) -> u32 {
        let n = self.ports.len() * self.flags.count();
        debug_assert!(n >= 1 && u64::from(n) <= 65535 * MAX_FLAG_SET as u64);
        n
    }

    /// The concrete step number `index` (below `choices()`): the port is
    /// `first + index / flag_count`, the flags choice `index % flag_count`.
    /// So a range with one flag demand is simply `first + index`.
    pub fn step(&self, index: u32) -> Step {
        debug_assert!(index < self.choices());
        let m = self.flags.count();
        let offset = index / m;
        // offset < ports.len(), so this stays within first..=last.
        let port = self.ports.first + offset as u16;
        Step {
            proto: self.proto,
            port,
            flags: self.flags.choice(index % m),
        }
    }

    /// Could the template give `step`? (For tests and `-C`.)
    pub fn covers(&self, step: &Step) -> bool {
        self.proto == step.proto
            && self.ports.contains(step.port)
            && match &self.flags {
                TemplateFlags::Fixed(spec) => *spec == step.flags,
                TemplateFlags::OneOf(set) => {
                    matches!(step.flags, FlagSpec::Exact(bits) if set.contains(&bits))
                }
            }
    }

    /// The template in words, e.g. `tcp/40000-40999 (1000 ports) with
    /// exactly one of: SYN | FIN SYN | SYN RST`.
    pub fn describe(&self) -> String {
        let first = Step {
            proto: self.proto,
            port: self.ports.first,
            flags: self.flags.choice(0),
        };
        let mut text = format!("{}/{}", self.proto, self.ports);
        if self.ports.len() > 1 {
            text += &format!(" ({} ports)", self.ports.len());
        }
        match &self.flags {
            // The plain step's words after its `proto/port`.
            TemplateFlags::Fixed(_) => {
                let words = first.describe();
                text += &words[format!("{}/{}", self.proto, self.ports.first).len()..];
            }
            TemplateFlags::OneOf(set) => {
                let names: Vec<String> = set.iter().map(|&bits| combination_words(bits)).collect();
                text += &format!(" with exactly one of: {}", names.join(" | "));
            }
        }
        text
    }
}

/// `FIN SYN`, or `no flags`.
fn combination_words(bits: u8) -> String {
    if bits == 0 {
        return "no flags".into();
    }
    let names: Vec<&str> = flags::LETTERS
        .iter()
        .filter(|(_, bit, _)| bits & bit != 0)
        .map(|(_, _, name)| *name)
        .collect();
    names.join(" ")
}

/// A plain step is a template with one choice.
impl From<Step> for Template {
    fn from(step: Step) -> Template {
        Template {
            proto: step.proto,
            ports: PortRange {
                first: step.port,
                last: step.port,
            },
            flags: TemplateFlags::Fixed(step.flags),
        }
    }
}

/// Canonical spelling, which parses back to the same template:
/// `tcp:40000-40999:{s,fs,sr}`, `udp:50000-50999`, `tcp:22:s`.
impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.proto, self.ports)?;
        // The plain step's own spelling of each flag demand (after
        // `proto:port`), so both print flags alike.
        let flag_text = |spec: FlagSpec| {
            let step = Step {
                proto: self.proto,
                port: self.ports.first,
                flags: spec,
            };
            let text = step.to_string();
            let skip = format!("{}:{}", self.proto, self.ports.first).len();
            text[skip..].trim_start_matches(':').to_string()
        };
        match &self.flags {
            TemplateFlags::Fixed(spec) => {
                let text = flag_text(*spec);
                if !text.is_empty() {
                    write!(f, ":{text}")?;
                }
            }
            TemplateFlags::OneOf(set) => {
                let texts: Vec<String> = set
                    .iter()
                    .map(|&bits| flag_text(FlagSpec::Exact(bits)))
                    .collect();
                write!(f, ":{{{}}}", texts.join(","))?;
            }
        }
        Ok(())
    }
}

impl FromStr for Template {
    type Err = StepError;

    fn from_str(text: &str) -> Result<Template, StepError> {
        let shown = text.escape_debug().to_string();
        let err = |msg: &str| Err(StepError(format!("frame '{shown}': {msg}")));
        if text.len() > MAX_TEMPLATE_TEXT {
            let clipped: String = text.chars().take(32).collect();
            return Err(StepError(format!(
                "frame '{}…' is too long to be a step template ({} bytes, at most \
                 {MAX_TEMPLATE_TEXT})",
                clipped.escape_debug(),
                text.len()
            )));
        }
        // proto : ports [: flags]. A ':' in the flags is refused by the
        // step parser ("too many ':'") when it sees the rest.
        let mut parts = text.splitn(3, ':');
        let proto_text = parts.next().unwrap_or("");
        let Some(ports_text) = parts.next() else {
            // No ports at all: let the step parser say what it says.
            return text.parse::<Step>().map(Template::from);
        };
        let flag_text = parts.next();
        let (first_text, last_text) = ports_text
            .split_once('-')
            .unwrap_or((ports_text, ports_text));

        // The plain step parser judges `proto:PORT[:FLAGS]` for each port
        // end and each flag combination; its message keeps the whole
        // template as the frame it names.
        let plain = |port: &str, flags: Option<&str>| -> Result<Step, StepError> {
            let sub = match flags {
                Some(f) => format!("{proto_text}:{port}:{f}"),
                None => format!("{proto_text}:{port}"),
            };
            sub.parse::<Step>().map_err(|e| {
                let prefix = format!("frame '{}': ", sub.escape_debug());
                let msg = e.0.strip_prefix(&prefix).unwrap_or(&e.0);
                StepError(format!("frame '{shown}': {msg}"))
            })
        };

        let set = match flag_text {
            Some(f) if f.starts_with('{') || f.ends_with('}') => {
                let Some(inner) = f.strip_prefix('{').and_then(|f| f.strip_suffix('}')) else {
                    return err("a set of flag combinations is written {a,b,...}, e.g. {s,fs,sr}");
                };
                Some(inner)
            }
            _ => None,
        };
        let (first, last, flags) = match set {
            None => {
                let first = plain(first_text, flag_text)?;
                let last = plain(last_text, flag_text)?;
                (first, last.port, TemplateFlags::Fixed(first.flags))
            }
            Some("") => return err(NEEDS_TWO),
            Some(inner) => {
                let members: Vec<&str> = inner.split(',').collect();
                if members.len() > MAX_FLAG_SET {
                    return err(&format!(
                        "a set holds at most {MAX_FLAG_SET} flag combinations, not {}",
                        members.len()
                    ));
                }
                let mut bits = Vec::with_capacity(members.len());
                for member in &members {
                    if member.is_empty() {
                        return err("empty flag combination in the set (use n for no flags)");
                    }
                    match plain(first_text, Some(member))?.flags {
                        FlagSpec::Exact(b) if bits.contains(&b) => {
                            return err(&format!(
                                "flag combination '{}' repeated in the set",
                                member.escape_debug()
                            ));
                        }
                        FlagSpec::Exact(b) => bits.push(b),
                        _ => {
                            return err("i (any flags) is no combination to draw from; use it \
                                 without braces, or list exact combinations")
                        }
                    }
                }
                if bits.len() < 2 {
                    return err(NEEDS_TWO);
                }
                crate::sort::sort(&mut bits);
                let first = plain(first_text, Some(members[0]))?;
                let last = plain(last_text, Some(members[0]))?;
                (first, last.port, TemplateFlags::OneOf(bits))
            }
        };
        let Some(ports) = PortRange::new(first.port, last) else {
            return err(&format!(
                "port range {}-{last} is backwards; write the lower port first",
                first.port
            ));
        };
        Ok(Template {
            proto: first.proto,
            ports,
            flags,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> Template {
        match text.parse() {
            Ok(t) => t,
            Err(e) => panic!("{text}: {e}"),
        }
    }

    #[test]
    fn parses_ranges_and_sets() {
        let a = t("tcp:40000-40999:{s,fs,sr}");
        assert_eq!(a.proto(), Proto::Tcp);
        assert_eq!(a.ports(), PortRange::new(40000, 40999).unwrap());
        assert_eq!(
            a.flags(),
            &TemplateFlags::OneOf(vec![
                flags::SYN,
                flags::FIN | flags::SYN,
                flags::SYN | flags::RST
            ])
        );
        assert_eq!(a.choices(), 3000);
        let b = t("udp:50000-50999");
        assert_eq!(b.flags(), &TemplateFlags::Fixed(FlagSpec::Any));
        assert_eq!(b.choices(), 1000);
        assert_eq!(t("tcp:1-65535:i").choices(), 65535);
        assert_eq!(
            t("TCP:7-7:X").flags(),
            &TemplateFlags::Fixed(FlagSpec::Exact(0x3f))
        );
        // The set's order is the bits', not the writer's.
        assert_eq!(t("tcp:1-9:{sr,s,FS}"), t("tcp:1-9:{s,fs,sr}"));
        assert_eq!(
            t("tcp:1-9:{x,n}").flags(),
            &TemplateFlags::OneOf(vec![0, 0x3f])
        );
    }

    #[test]
    fn plain_steps_are_one_choice_templates() {
        for text in [
            "tcp:22:s",
            "udp:1234",
            "tcp:543",
            "tcp:543:i",
            "tcp:123:frap",
            "tcp:434:x",
        ] {
            let step: Step = text.parse().unwrap();
            let template = t(text);
            assert_eq!(template, Template::from(step), "{text}");
            assert_eq!(template.choices(), 1);
            assert_eq!(template.step(0), step);
            assert_eq!(template.describe(), step.describe());
        }
    }

    #[test]
    fn display_round_trips_in_canonical_form() {
        for (text, canonical) in [
            ("tcp:40000-40999:{s,fs,sr}", "tcp:40000-40999:{s,fs,sr}"),
            ("tcp:40000-40999:{SR,s,sf}", "tcp:40000-40999:{s,fs,sr}"),
            ("udp:50000-50999", "udp:50000-50999"),
            ("tcp:22:s", "tcp:22:s"),
            ("tcp:22", "tcp:22:n"),
            ("tcp:5-5:i", "tcp:5:i"),
            ("tcp:1-2:{n,x}", "tcp:1-2:{n,x}"),
            ("tcp:60000-60099:uf", "tcp:60000-60099:fu"),
        ] {
            let parsed = t(text);
            assert_eq!(parsed.to_string(), canonical, "{text}");
            assert_eq!(t(canonical), parsed);
        }
    }

    /// The messages are the plain step parser's, naming the whole template.
    #[test]
    fn refuses_bad_templates_in_the_step_parsers_words() {
        for (text, msg) in [
            ("icmp:1-5", "protocol must be tcp or udp, not 'icmp'"),
            ("tcp", "expected protocol:port[:flags]"),
            ("tcp:0-5", "port must be a number from 1 to 65535, not '0'"),
            (
                "tcp:5-65536",
                "port must be a number from 1 to 65535, not '65536'",
            ),
            ("tcp:5-", "port must be a number from 1 to 65535, not ''"),
            ("tcp:-5", "port must be a number from 1 to 65535, not ''"),
            (
                "tcp:1-2-3",
                "port must be a number from 1 to 65535, not '2-3'",
            ),
            (
                "tcp:9-5:s",
                "port range 9-5 is backwards; write the lower port first",
            ),
            (
                "tcp:1-5:q",
                "unknown flag 'q' (known: f s r p a u, or one of x n i)",
            ),
            (
                "tcp:1-5:{s,q}",
                "unknown flag 'q' (known: f s r p a u, or one of x n i)",
            ),
            ("tcp:1-5:{s,ss}", "flag 's' repeated"),
            (
                "tcp:1-5:{s,fs,sf}",
                "flag combination 'sf' repeated in the set",
            ),
            (
                "tcp:1-5:{s,i}",
                "i (any flags) is no combination to draw from",
            ),
            ("tcp:1-5:{s}", "needs at least two"),
            ("tcp:1-5:{}", "needs at least two"),
            ("tcp:1-5:{s,}", "empty flag combination in the set"),
            ("tcp:1-5:{s,fs", "is written {a,b,...}"),
            ("tcp:1-5:s,fs}", "is written {a,b,...}"),
            ("tcp:1-5:{s:fs}", "too many ':'"),
            ("tcp:1-5:s:1", "too many ':'"),
            ("udp:1-5:s", "udp frames take no flags"),
            ("udp:1-5:{s,fs}", "udp frames take no flags"),
            (
                "tcp:1-5:{n,f,s,fs,r,fr,sr,fsr,p,fp,sp,fsp,rp,frp,srp,fsrp,a}",
                "at most 16 flag combinations, not 17",
            ),
        ] {
            let e = match text.parse::<Template>() {
                Ok(t) => panic!("{text} parsed as {t:?}"),
                Err(e) => e.0,
            };
            let expect = format!("frame '{text}': ");
            assert!(e.starts_with(&expect) && e.contains(msg), "{text}: {e}");
        }
        let long = format!("tcp:1-5:{{{}}}", "fsrpau,".repeat(20));
        let e = long.parse::<Template>().unwrap_err().0;
        assert!(e.contains("too long to be a step template"), "{e}");
        assert!(e.len() < 120, "{e}");
    }

    #[test]
    fn steps_enumerate_every_port_and_combination_once() {
        let a = t("tcp:40000-40002:{s,fs,sr}");
        let all: Vec<Step> = (0..a.choices()).map(|i| a.step(i)).collect();
        let texts: Vec<String> = all.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            texts,
            [
                "tcp:40000:s",
                "tcp:40000:fs",
                "tcp:40000:sr",
                "tcp:40001:s",
                "tcp:40001:fs",
                "tcp:40001:sr",
                "tcp:40002:s",
                "tcp:40002:fs",
                "tcp:40002:sr"
            ]
        );
        assert!(all.iter().all(|s| a.covers(s)));
        assert!(!a.covers(&"tcp:40003:s".parse().unwrap()));
        assert!(!a.covers(&"tcp:40000:r".parse().unwrap()));
        assert!(!a.covers(&"udp:40000".parse().unwrap()));
        let full = t("udp:1-65535");
        assert_eq!(full.step(0).port, 1);
        assert_eq!(full.step(65534).port, 65535);
    }

    #[test]
    fn describes_in_words() {
        assert_eq!(
            t("tcp:40000-40999:{s,fs,sr}").describe(),
            "tcp/40000-40999 (1000 ports) with exactly one of: SYN | FIN SYN | SYN RST"
        );
        assert_eq!(
            t("tcp:1-2:{n,x}").describe(),
            "tcp/1-2 (2 ports) with exactly one of: no flags | FIN SYN RST PSH ACK URG"
        );
        assert_eq!(
            t("tcp:60000-60099:fu").describe(),
            "tcp/60000-60099 (100 ports) with exactly FIN URG"
        );
        assert_eq!(t("udp:5-6").describe(), "udp/5-6 (2 ports)");
        assert_eq!(
            t("tcp:5-6:i").describe(),
            "tcp/5-6 (2 ports) with any flags"
        );
    }

    #[test]
    fn random_text_never_panics() {
        let mut rng = crate::testutil::XorShift(0x7e3b1a7e);
        let alphabet = b"tcpudTCP:-{},0123456789fsrpauxni! ";
        for _ in 0..20_000 {
            let len = rng.below(40);
            let text: String = (0..len)
                .map(|_| alphabet[rng.below(alphabet.len())] as char)
                .collect();
            if let Ok(template) = text.parse::<Template>() {
                assert_eq!(t(&template.to_string()), template, "{text}");
                let last = template.step(template.choices() - 1);
                assert!(template.covers(&last));
            }
        }
    }
}

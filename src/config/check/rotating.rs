//! `tportknockd -C` for rotating events: the step templates in words, the
//! guess space, and the warnings that apply to templates — ordinary traffic
//! on the first step's ports and flags (the same judgement as for a plain
//! first step, asked of every port and combination the template allows),
//! and a guess space below
//! [`MIN_GUESS_BITS`](crate::knock::rotate::MIN_GUESS_BITS) per guess.
//!
//! `check::run` calls these for events with `key_file`; it prefixes the
//! warnings with `FILE:LINE: event NAME `, as for every other warning.

use std::io::Write;
use std::path::Path;

use super::ordinary_traffic;
use crate::knock::rotate::{GuessSpace, WindowLen};
use crate::knock::template::Template;

/// Distinct reasons listed in one warning before "and N more".
const MAX_REASONS: usize = 4;

/// Writes the event's rotating sequence in words (after the caller's
/// `event NAME (line N)` line): steps, window, key file and guess space.
pub fn describe(
    templates: &[Template],
    timeout: u32,
    window: WindowLen,
    key_file: &Path,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let frames = if templates.len() == 1 {
        "1 frame".to_string()
    } else {
        format!("{} frames", templates.len())
    };
    writeln!(
        out,
        "  rotating sequence: {frames} within {timeout} s, drawn anew every {} s from the \
         key in {}",
        window.secs(),
        key_file.display()
    )?;
    for (i, template) in templates.iter().enumerate() {
        writeln!(out, "    {}. {}", i + 1, template.describe())?;
    }
    writeln!(out, "  {}", GuessSpace::of(templates).describe())
}

/// Legal but risky choices in a rotating sequence, each completing
/// `event NAME …`.
pub fn warnings(templates: &[Template]) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(first) = templates.first() {
        let why = ordinary_reasons(first);
        if !why.is_empty() {
            out.push(format!(
                "starts with {}, which ordinary traffic can hit: {}; such traffic costs the \
                 daemon CPU and memory and starts or derails knock attempts",
                first.describe(),
                why.join("; ")
            ));
        }
    }
    if let Some(w) = GuessSpace::of(templates).warning() {
        out.push(w);
    }
    out
}

/// Why ordinary traffic would produce some step `template` allows: the
/// plain-step judgement for each port and flag choice, without repeats.
fn ordinary_reasons(template: &Template) -> Vec<String> {
    let mut reasons: Vec<String> = Vec::new();
    let mut more = 0usize;
    for index in 0..template.choices() {
        for reason in ordinary_traffic(&template.step(index)) {
            if reasons.contains(&reason) {
                continue;
            }
            if reasons.len() < MAX_REASONS {
                reasons.push(reason);
            } else {
                more += 1;
            }
        }
    }
    if more > 0 {
        // Counted without repeats only among the listed ones: "at least".
        reasons.push(format!("and at least {more} more"));
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;

    fn templates(text: &str) -> Vec<Template> {
        text.split_whitespace()
            .map(|t| t.parse().unwrap())
            .collect()
    }

    #[test]
    fn describes_a_rotating_event_in_words() {
        let mut out = Vec::new();
        describe(
            &templates(
                "tcp:40000-40999:{s,fs,sr} udp:50000-50999 tcp:40000-40999:{s,fs,sr} \
                 tcp:60000-60099:fu",
            ),
            10,
            WindowLen::default(),
            Path::new("/etc/tportknockd/ssh.key"),
            &mut out,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "  rotating sequence: 4 frames within 10 s, drawn anew every 30 s from the key in \
             /etc/tportknockd/ssh.key
    1. tcp/40000-40999 (1000 ports) with exactly one of: SYN | FIN SYN | SYN RST
    2. udp/50000-50999 (1000 ports)
    3. tcp/40000-40999 (1000 ports) with exactly one of: SYN | FIN SYN | SYN RST
    4. tcp/60000-60099 (100 ports) with exactly FIN URG
  guess space: about 40 bits per window; with 3 windows live a guessed sequence opens \
             with a chance of about 1 in 2^38
"
        );
    }

    #[test]
    fn a_quiet_first_step_and_a_large_guess_space_give_no_warning() {
        // SYN alone, or with FIN or URG, on unassigned ports: no ordinary
        // traffic (these are no replies, so the ephemeral range does not matter).
        assert_eq!(
            warnings(&templates(
                "tcp:40000-40999:{s,fs,su} tcp:40000-40999:s udp:50000-50999 tcp:40000-40999:s"
            )),
            Vec::<String>::new()
        );
        // With RST in a combination, the same ports could see replies.
        let w = warnings(&templates(
            "tcp:40000-40999:{s,fs,sr} tcp:40000-40999:s udp:50000-50999 tcp:40000-40999:s",
        ));
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains(
                "which ordinary traffic can hit: replies to this host's own connections arrive on \
             ports 32768-60999"
            ),
            "{}",
            w[0]
        );
    }

    /// The plain-step judgement is asked of every port and combination:
    /// a service port inside the range, a connection flag set in the set,
    /// replies arriving in the ephemeral range.
    #[test]
    fn ordinary_traffic_anywhere_in_the_first_step_is_warned() {
        let w = warnings(&templates(
            "tcp:7990-8090:s udp:1-65535 udp:1-65535 udp:1-65535",
        ));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with(
                "starts with tcp/7990-8090 (101 ports) with exactly SYN, which ordinary traffic \
             can hit: tcp/8080 is a common service port (http-alt); such traffic"
            ),
            "{}",
            w[0]
        );

        let w = warnings(&templates("tcp:40000-40999:{s,pa} udp:1-65535 udp:1-65535"));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains(
                "established and closing TCP connections send those flags all the time; replies \
             to this host's own connections arrive on ports 32768-60999"
            ),
            "{}",
            w[0]
        );

        // Every UDP port of 1-65535: more distinct reasons than are listed.
        let w = warnings(&templates("udp:1-65535 udp:1-65535 udp:1-65535"));
        assert!(
            w[0].contains("udp/53 is a common service port (dns)"),
            "{}",
            w[0]
        );
        assert!(w[0].contains("and at least "), "{}", w[0]);
        // Later steps are not judged, as for plain sequences.
        assert!(warnings(&templates(
            "tcp:40000-40999:s udp:1-65535 udp:1-65535 udp:53-80"
        ))
        .is_empty());
    }

    #[test]
    fn a_small_guess_space_is_warned() {
        let w = warnings(&templates("tcp:40000-40999:s tcp:40000-40999:s"));
        assert_eq!(w.len(), 1);
        assert!(
            w[0].starts_with(
                "is easy to guess: a guessed sequence opens with a chance of about 1 in 2^18"
            ),
            "{}",
            w[0]
        );
    }

    /// The largest first step -C can meet: every port, 16 combinations.
    #[test]
    fn the_largest_template_is_judged_in_reasonable_time() {
        let big = templates("tcp:1-65535:{n,f,s,fs,r,fr,sr,fsr,p,fp,sp,fsp,rp,frp,srp,fsrp}");
        let start = std::time::Instant::now();
        let w = warnings(&big);
        assert!(
            w.iter().any(|m| m.starts_with("starts with tcp/1-65535")),
            "{w:?}"
        );
        // Not a timing assertion: printed so a slowdown is seen.
        eprintln!("judged 65535 x 16 steps in {:?}", start.elapsed());
    }
}

//! knockd's one-time sequence files (`One_Time_Sequences`): one sequence a
//! line in knockd's `Sequence` syntax. The first valid line not starting
//! with `#` is the active sequence. Once it has been knocked, its first byte
//! is overwritten with `#` in place and the file fsync'ed — before the door
//! opens, so neither a crash nor a restart can make a used sequence valid
//! again — and the next valid line becomes active. Lines that do not parse
//! are skipped (and reported), never marked.
//!
//! Like knockd, the `#` replaces whatever the first byte is: a line without
//! leading blank loses its first digit, which does not matter once used.

use std::os::unix::fs::FileExt;
use std::path::Path;

use super::knockd::{parse_ports, with_flags};
use super::{clip, open_private};
use crate::knock::{FlagSpec, Step};

/// The active line of a one-time file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Active {
    /// 1-based, for messages.
    pub line: usize,
    /// Byte offset of the line's first byte: where `#` goes.
    pub offset: u64,
    /// The line's sequence, TCP steps carrying the event's flags.
    pub steps: Vec<Step>,
}

/// What a one-time file holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scan {
    /// `None`: no unused sequence left.
    pub active: Option<Active>,
    /// Unused valid lines, the active one included.
    pub unused: usize,
    /// `FILE:LINE: ...` for each line skipped because it does not parse.
    pub skipped: Vec<String>,
}

/// Reads `bytes` as a one-time file whose TCP steps demand `tcp` flags.
pub fn scan(bytes: &[u8], tcp: FlagSpec, file: &str) -> Scan {
    let mut out = Scan::default();
    let mut offset = 0u64;
    for (idx, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let start = offset;
        offset += raw.len() as u64 + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        match raw.iter().find(|b| !b.is_ascii_whitespace()) {
            None | Some(b'#') => continue,
            Some(_) => {}
        }
        let parsed = match std::str::from_utf8(raw) {
            Err(_) => Err("line is not text".to_string()),
            Ok(text) if text.len() > super::MAX_LINE => Err("line is too long".to_string()),
            Ok(text) => {
                parse_ports(text.trim()).map_err(|e| format!("'{}': {e}", clip(text.trim())))
            }
        };
        match parsed {
            Ok(ports) if !ports.is_empty() => {
                out.unused += 1;
                if out.active.is_none() {
                    out.active = Some(Active {
                        line: idx + 1,
                        offset: start,
                        steps: with_flags(&ports, tcp),
                    });
                }
            }
            Ok(_) => {}
            Err(e) => out
                .skipped
                .push(format!("{file}:{}: skipped one-time line: {e}", idx + 1)),
        }
    }
    out
}

/// Reads the one-time file at `path` with the config's ownership rules.
pub fn read(path: &Path, tcp: FlagSpec) -> Result<Scan, String> {
    let name = path.display().to_string();
    let (_, bytes) = open_private(path, false).map_err(|e| e.to_string())?;
    Ok(scan(&bytes, tcp, &name))
}

/// Marks the first unused line holding `used` as used (`#` over its first
/// byte, then fsync) and returns the file's state afterwards. Fails — and
/// marks nothing — when no unused line holds `used` (the file was edited)
/// or the file cannot be written; the caller must then not open the door.
pub fn mark_used(path: &Path, tcp: FlagSpec, used: &[Step]) -> Result<Scan, String> {
    let name = path.display().to_string();
    let (file, mut bytes) = open_private(path, true).map_err(|e| e.to_string())?;
    let mut offset = None;
    let mut rest = &bytes[..];
    let mut base = 0u64;
    // The active line normally; a later one if the file was edited since.
    while offset.is_none() {
        let s = scan(rest, tcp, &name);
        let Some(active) = s.active else { break };
        let line_end = rest[active.offset as usize..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |p| active.offset as usize + p + 1);
        if active.steps == used {
            offset = Some(base + active.offset);
        }
        base += line_end as u64;
        rest = &rest[line_end..];
    }
    let Some(offset) = offset else {
        return Err(format!(
            "{name}: the sequence just knocked is no longer an unused line of the file"
        ));
    };
    file.write_all_at(b"#", offset)
        .and_then(|()| file.sync_data())
        .map_err(|e| format!("{name}: cannot mark the used sequence: {e}"))?;
    if let Some(b) = bytes.get_mut(offset as usize) {
        *b = b'#';
    }
    Ok(scan(&bytes, tcp, &name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knock::{flags, Proto};
    use crate::testutil::Scratch;

    fn ports(steps: &[Step]) -> Vec<(Proto, u16)> {
        steps.iter().map(|s| (s.proto, s.port)).collect()
    }

    #[test]
    fn scan_skips_comments_blanks_and_bad_lines() {
        let text = b"# header\n\n 1000,2000\n  #used\nbad,line\n3000:udp,4000\r\n\xff\n";
        let s = scan(text, FlagSpec::Any, "f");
        let a = s.active.unwrap();
        assert_eq!((a.line, a.offset), (3, 10));
        assert_eq!(ports(&a.steps), [(Proto::Tcp, 1000), (Proto::Tcp, 2000)]);
        assert_eq!(s.unused, 2);
        assert_eq!(
            s.skipped,
            [
                "f:5: skipped one-time line: 'bad,line': 'bad', 'line' not port[:tcp|udp] with a port from 1 to 65535",
                "f:7: skipped one-time line: line is not text",
            ]
        );
    }

    #[test]
    fn tcp_steps_take_the_event_flags() {
        let mask = FlagSpec::Mask {
            set: flags::FIN,
            clear: flags::ACK,
        };
        let s = scan(b"1:udp,2\n", mask, "f");
        let steps = s.active.unwrap().steps;
        assert_eq!(steps[0].flags, FlagSpec::Any);
        assert_eq!(steps[1].flags, mask);
    }

    #[test]
    fn marking_writes_hash_in_place_and_moves_on() {
        let dir = Scratch::new("onetime");
        let path = dir.file("seq", " 1000,2000\n3000,4000\n 5000\n", 0o600);
        let first = read(&path, FlagSpec::Any).unwrap().active.unwrap().steps;
        let s = mark_used(&path, FlagSpec::Any, &first).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "#1000,2000\n3000,4000\n 5000\n"
        );
        let second = s.active.unwrap();
        assert_eq!((second.line, s.unused), (2, 2));
        // Marking again what was just used fails and changes nothing.
        assert!(mark_used(&path, FlagSpec::Any, &first).is_err());
        // No leading blank: the first digit goes, as with knockd.
        mark_used(&path, FlagSpec::Any, &second.steps).unwrap();
        let s = read(&path, FlagSpec::Any).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "#1000,2000\n#000,4000\n 5000\n"
        );
        let last = s.active.unwrap().steps;
        let s = mark_used(&path, FlagSpec::Any, &last).unwrap();
        assert_eq!((s.active, s.unused), (None, 0));
    }

    #[test]
    fn marking_a_later_line_when_the_file_was_edited() {
        let dir = Scratch::new("onetime-edit");
        let path = dir.file("seq", "1,2\n3,4\n", 0o600);
        let second = scan(b"3,4\n", FlagSpec::Any, "f").active.unwrap().steps;
        let s = mark_used(&path, FlagSpec::Any, &second).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "1,2\n#,4\n");
        assert_eq!(s.active.unwrap().line, 1);
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for round in 0..300 {
            let mut bytes = Vec::new();
            for _ in 0..(round * 13) % 1500 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                bytes.push(match x % 4 {
                    0 => b"0123456789,:#\n "[(x >> 8) as usize % 15],
                    _ => x as u8,
                });
            }
            let s = scan(&bytes, FlagSpec::Any, "f");
            if let Some(a) = s.active {
                assert!(a.offset < bytes.len() as u64);
                assert_ne!(bytes[a.offset as usize], b'#');
                assert!(!a.steps.is_empty());
            }
        }
    }

    #[test]
    fn refuses_files_others_can_write() {
        let dir = Scratch::new("onetime-mode");
        let path = dir.file("seq", "1,2\n", 0o666);
        assert!(read(&path, FlagSpec::Any)
            .unwrap_err()
            .contains("group or others can write it"));
        let steps = scan(b"1,2\n", FlagSpec::Any, "f").active.unwrap().steps;
        assert!(mark_used(&path, FlagSpec::Any, &steps).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "1,2\n");
    }
}

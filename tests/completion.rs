//! The bash completions in dist/bash-completion/, run by bash as
//! bash-completion would: COMP_WORDS and COMP_CWORD set, the function
//! called, COMPREPLY read back.

use std::path::{Path, PathBuf};
use std::process::Command;

const DAEMON: &str = env!("CARGO_BIN_EXE_tportknockd");
const CLIENT: &str = env!("CARGO_BIN_EXE_tportknock");

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The completions bash offers for `words` (the last one being completed),
/// with the test's binaries first in PATH.
fn complete(words: &[&str]) -> Vec<String> {
    let program = words[0];
    let bin_dir = Path::new(DAEMON).parent().unwrap();
    let quoted: Vec<String> = words
        .iter()
        .map(|w| format!("'{}'", w.replace('\'', "'\\''")))
        .collect();
    let script = format!(
        "source '{}' || exit 3\n\
         COMP_WORDS=({})\n\
         COMP_CWORD={}\n\
         _{program}\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        repo(&format!("dist/bash-completion/{program}")).display(),
        quoted.join(" "),
        words.len() - 1,
    );
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &script])
        .env("PATH", path)
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut got: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    got.sort_unstable();
    got
}

/// The options `-h` lists: `-X` and `--long` at the start of a line.
fn options_in_help(bin: &str) -> Vec<String> {
    let out = Command::new(bin).arg("-h").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    let mut opts = Vec::new();
    for line in help.lines().map(str::trim_start) {
        let mut words = line.split([' ', ',']).filter(|w| !w.is_empty());
        if let Some(w) = words.next().filter(|w| w.len() == 2 && w.starts_with('-')) {
            opts.push(w.to_string());
            if let Some(long) = words.next().filter(|w| w.starts_with("--")) {
                opts.push(long.to_string());
            }
        }
    }
    opts.sort_unstable();
    opts
}

#[test]
fn every_option_of_each_program_is_offered() {
    for (program, bin) in [("tportknockd", DAEMON), ("tportknock", CLIENT)] {
        let want = options_in_help(bin);
        assert!(want.len() >= 8, "{program}: {want:?}");
        assert_eq!(complete(&[program, "-"]), want, "{program}");
    }
    assert_eq!(complete(&["tportknockd", "--v"]), ["--version"]);
    assert_eq!(complete(&["tportknock", "--u"]), ["--udp"]);
}

#[test]
fn option_values_are_completed_by_kind() {
    // -i: the interfaces this machine has.
    let mut ifaces: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    ifaces.sort_unstable();
    assert!(ifaces.contains(&"lo".to_string()));
    assert_eq!(complete(&["tportknockd", "-i", ""]), ifaces);
    assert_eq!(complete(&["tportknockd", "-i", "l"]), ["lo"]);

    // -c and -C: files.
    let dir = std::env::temp_dir().join(format!("tpk-compl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("knock.conf");
    std::fs::write(
        &conf,
        "<SSH>\n sequence = udp:1\n</SSH>\n  <web-2.door>\n</web-2.door>\n# <Commented>\n",
    )
    .unwrap();
    let prefix = dir.join("kno");
    let prefix = prefix.to_str().unwrap();
    for opt in ["-c", "-C"] {
        assert_eq!(
            complete(&["tportknockd", opt, prefix]),
            [conf.display().to_string()]
        );
    }

    // tportknock -e: the events of the file given with -c.
    let conf_s = conf.to_str().unwrap();
    assert_eq!(
        complete(&["tportknock", "-c", conf_s, "-e", ""]),
        ["SSH", "web-2.door"]
    );
    assert_eq!(
        complete(&["tportknock", "--config", conf_s, "--event", "w"]),
        ["web-2.door"]
    );
    // knockd.conf sections, [options] left out.
    let knockd = dir.join("knockd.conf");
    std::fs::write(
        &knockd,
        "[options]\n UseSyslog\n[openSSH]\n sequence = 7000\n",
    )
    .unwrap();
    assert_eq!(
        complete(&["tportknock", "-c", knockd.to_str().unwrap(), "-e", ""]),
        ["openSSH"]
    );
    // No -c: nothing to offer.
    assert_eq!(complete(&["tportknock", "-e", ""]), Vec::<String>::new());
    let _ = std::fs::remove_dir_all(&dir);
}

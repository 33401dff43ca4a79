//! The manuals stay true to the programs: they render without warnings, and
//! every option the binaries accept and every key the example uses is
//! documented.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo(rel)).unwrap()
}

#[test]
fn manuals_render_without_warnings() {
    for page in ["man/tportknockd.8", "man/knock.conf.5", "man/tportknock.1"] {
        let out = Command::new("groff")
            .args(["-man", "-ww", "-z"])
            .arg(repo(page))
            .output()
            .expect("groff (Debian package groff-base; `make test` installs it)");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{page}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// As a reader sees them: `man` at 80 columns, with groff's warnings on
/// (a table wider than the line shows up only there, not in `groff -z`).
#[test]
fn manuals_format_at_80_columns_without_warnings() {
    for page in ["man/tportknockd.8", "man/knock.conf.5", "man/tportknock.1"] {
        let out = Command::new("man")
            .args(["--warnings", "-l"])
            .arg(repo(page))
            .env("MANWIDTH", "80")
            .env("MANPAGER", "cat")
            .env("LC_ALL", "C.UTF-8")
            .output()
            .expect("man (Debian package man-db; `make test` installs it)");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && err.is_empty(), "{page}:\n{err}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.lines().count() > 50,
            "{page} rendered to almost nothing"
        );
    }
}

/// The option letters a binary's `-h` lists (`-X` at the start of a column).
fn options_of(bin: &str) -> Vec<char> {
    let out = Command::new(bin).arg("-h").output().unwrap();
    let help =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let mut letters: Vec<char> = help
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix('-'))
        .filter_map(|rest| rest.chars().next())
        .filter(char::is_ascii_alphanumeric)
        .collect();
    // "-4, -6" lists two options on one line.
    letters.extend(help.lines().filter(|l| l.contains(", -")).filter_map(|l| {
        l.split(", -")
            .nth(1)
            .and_then(|r| r.chars().next())
            .filter(char::is_ascii_alphanumeric)
    }));
    letters.sort_unstable();
    letters.dedup();
    assert!(
        letters.len() >= 5,
        "could not read options from {bin} -h:\n{help}"
    );
    letters
}

/// Options documented in a page: `.B \-X` / `.BI \-X` / `.BR \-X` headers,
/// or with the long name beside it, `.B "\-X, \-\-long"`.
fn documented(page: &str, letter: char) -> bool {
    let text = read(page);
    let marks = [
        format!(".B \\-{letter}"),
        format!(".BI \\-{letter}"),
        format!(".BR \\-{letter}"),
        format!(".B \"\\-{letter},"),
        format!(".BI \"\\-{letter},"),
    ];
    text.lines().any(|l| {
        marks
            .iter()
            .any(|m| l == m || l.starts_with(&format!("{m} ")) || l.starts_with(&format!("{m}\"")))
    })
}

#[test]
fn every_option_of_both_programs_is_in_its_manual() {
    for (bin, page) in [
        (env!("CARGO_BIN_EXE_tportknockd"), "man/tportknockd.8"),
        (env!("CARGO_BIN_EXE_tportknock"), "man/tportknock.1"),
    ] {
        let missing: Vec<char> = options_of(bin)
            .into_iter()
            .filter(|&l| !documented(page, l))
            .collect();
        assert!(missing.is_empty(), "{page} lacks options {missing:?}");
    }
}

#[test]
fn every_key_of_the_example_is_in_knock_conf_5() {
    let example = read("knock.conf.example");
    let page = read("man/knock.conf.5");
    let mut keys: Vec<&str> = example
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('<'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
        .filter(|k| !k.is_empty())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    assert!(keys.contains(&"sequence"), "no keys read from the example");
    for key in keys {
        assert!(
            page.lines().any(|l| l == format!(".B {key}")),
            "knock.conf.5 does not document `{key}`"
        );
    }
}

#[test]
fn the_daemon_manual_names_every_signal_it_handles() {
    let page = read("man/tportknockd.8");
    for sig in ["SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1"] {
        assert!(page.contains(sig), "tportknockd.8 does not mention {sig}");
    }
}

/// The `<EVENT>…</EVENT>` blocks in a text, roff escapes undone.
fn event_blocks(text: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        let line = line.replace("\\-", "-");
        let t = line.trim();
        if t.starts_with('<') && !t.starts_with("</") && t.ends_with('>') && !t.contains(' ') {
            inside = true;
        }
        if inside {
            out.push_str(&line);
            out.push('\n');
        }
        if t.starts_with("</") {
            inside = false;
        }
    }
    out
}

fn check_ok(name: &str, config: &str) {
    use std::os::unix::fs::PermissionsExt;
    assert!(
        config.contains("start_command"),
        "no events found in {name}"
    );
    let path = std::env::temp_dir().join(format!("tpk-man-{}-{name}.conf", std::process::id()));
    std::fs::write(&path, config).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tportknockd"))
        .arg("-C")
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "the examples in {name} do not check:\n{config}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn examples_in_the_manual_and_readme_are_valid_configs() {
    let page = read("man/knock.conf.5");
    let examples = page.split_once(".SH EXAMPLES").expect("EXAMPLES section").1;
    check_ok("knock.conf.5", &event_blocks(examples));
    check_ok("README", &event_blocks(&read("README.md")));
}

//! The client knocks the real daemon (issue 5): every event of the shipped
//! `knock.conf.example`, read by `tportknock -c … -e …` with the daemon's
//! own parser, opens exactly its own door — over IPv4, and the flag-only
//! single-port event over IPv6 too.

mod common;
use common::daemon::*;
use common::*;
use std::time::Duration;

const CLIENT: &str = env!("CARGO_BIN_EXE_tportknock");

fn example() -> (String, tportknockd::config::Config) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("knock.conf.example");
    let text = std::fs::read_to_string(&path).unwrap();
    let config = tportknockd::config::parse(text.as_bytes(), "knock.conf.example").unwrap();
    (path.display().to_string(), config)
}

/// The example's sequences and timeouts, with commands that record the
/// event name and address instead of touching a firewall.
fn daemon_config(config: &tportknockd::config::Config, out: &std::path::Path) -> String {
    let mut text = String::new();
    for ev in &config.events {
        let seq: Vec<String> = ev.sequence.iter().map(|s| s.to_string()).collect();
        text.push_str(&format!(
            "<{n}>\n sequence = {}\n timeout = {}\n start_command = echo {n} %IP% >> {}\n</{n}>\n",
            seq.join(" "),
            ev.timeout,
            out.display(),
            n = ev.name
        ));
    }
    text
}

fn client_knock(pair: &Pair, example: &str, event: &str, host: &str) {
    let out = pair
        .client
        .command(CLIENT)
        .args(["-c", example, "-e", event, "-d", "5", host])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tportknock -e {event} {host}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn client_opens_every_example_event_and_only_that_one() {
    let (path, config) = example();
    assert!(
        config.events.len() >= 4,
        "the example should carry the original's events"
    );
    let pair = Pair::new();
    let dir = TempDir::new("cd1");
    let out = dir.join("opened");
    write_config(&dir, &daemon_config(&config, &out));
    let d = start_daemon(&pair, &dir, &[]);
    let host = pair.server4.to_string();
    for (i, ev) in config.events.iter().enumerate() {
        client_knock(&pair, &path, &ev.name, &host);
        let lines = wait_lines(&out, i + 1, Duration::from_secs(3));
        assert_eq!(
            lines.get(i),
            Some(&format!("{} {}", ev.name, pair.client4)),
            "after knocking {}: {lines:?}\nlog:\n{}",
            ev.name,
            d.log_text()
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        read_lines(&out).len(),
        config.events.len(),
        "a knock opened a door it should not"
    );
}

#[test]
fn client_flag_knocks_a_single_port_over_ipv6() {
    let (path, config) = example();
    let ev = config
        .events
        .iter()
        .find(|e| e.sequence.iter().all(|s| s.port == e.sequence[0].port) && e.sequence.len() > 1)
        .expect("the example has a flag-only single-port event");
    let pair = Pair::new();
    let dir = TempDir::new("cd2");
    let out = dir.join("opened");
    write_config(&dir, &daemon_config(&config, &out));
    let d = start_daemon(&pair, &dir, &[]);
    client_knock(&pair, &path, &ev.name, &pair.server6.to_string());
    assert_eq!(
        wait_lines(&out, 1, Duration::from_secs(3)),
        vec![format!("{} {}", ev.name, pair.client6)],
        "log:\n{}",
        d.log_text()
    );
}

#[test]
fn client_steps_on_the_command_line_open_the_door() {
    let pair = Pair::new();
    let dir = TempDir::new("cd3");
    let out = dir.join("opened");
    write_config(
        &dir,
        &format!(
            "<FLAGS>\n sequence = udp:1234 tcp:543 tcp:123:frap tcp:434:x tcp:2345:n\n timeout = 5\n \
             start_command = echo %IP% >> {}\n</FLAGS>\n",
            out.display()
        ),
    );
    let d = start_daemon(&pair, &dir, &[]);
    let o = pair
        .client
        .command(CLIENT)
        .args([
            &pair.server4.to_string(),
            "udp:1234",
            "tcp:543",
            "tcp:123:frap",
            "tcp:434:x",
            "tcp:2345:n",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        wait_lines(&out, 1, Duration::from_secs(3)),
        vec![pair.client4.to_string()],
        "log:\n{}",
        d.log_text()
    );
}

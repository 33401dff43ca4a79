//! End-to-end with a real firewall: nftables in the server namespace hides
//! a TCP service on port 22; only the address that knocked gets through,
//! and only until the door closes.

mod common;
use common::daemon::*;
use common::*;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

/// Tries a TCP connection from the client namespace, from `src`.
fn can_connect(pair: &Pair, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
    pair.client.run(move || {
        use socket2::{Domain, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        s.bind(&SocketAddr::V4(SocketAddrV4::new(src, 0)).into())
            .unwrap();
        s.connect_timeout(
            &SocketAddr::V4(SocketAddrV4::new(dst, 22)).into(),
            Duration::from_millis(400),
        )
        .is_ok()
    })
}

#[test]
fn nftables_door_opens_only_for_the_knocker_and_closes_again() {
    let pair = Pair::new();
    let dir = TempDir::new("fw");
    let second = Ipv4Addr::new(10, 199, 0, 3);
    pair.client
        .must(&format!("ip addr add {second}/24 dev {}", pair.client_if));
    pair.server.must(
        "nft -f - <<'EOF'
table inet tpk {
  set knocked { type ipv4_addr; }
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport 22 ip saddr @knocked accept
    tcp dport 22 drop
  }
}
EOF",
    );
    // The hidden service: a listener on port 22 in the server namespace.
    let listener = pair
        .server
        .run(|| std::net::TcpListener::bind("0.0.0.0:22").unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            drop(conn);
        }
    });
    write_config(
        &dir,
        "<SSH>\n sequence = udp:1234 tcp:543 tcp:543:i tcp:123:frap tcp:434:x tcp:2345:n\n timeout = 10\n \
         start_command = nft add element inet tpk knocked { %IP% }\n \
         stop_command = nft delete element inet tpk knocked { %IP% }\n command_delay = 3\n</SSH>\n",
    );
    let d = start_daemon(&pair, &dir, &[]);
    assert!(
        !can_connect(&pair, pair.client4, pair.server4),
        "port 22 reachable before knocking"
    );
    knock(
        &pair,
        &[
            (UDP, 1234, 0),
            (TCP, 543, 0),
            (TCP, 543, 0x18),
            (TCP, 123, 0x1d),
            (TCP, 434, 0x3f),
            (TCP, 2345, 0),
        ],
    );
    let opened = wait_for(Duration::from_secs(3), || {
        can_connect(&pair, pair.client4, pair.server4).then_some(())
    });
    assert!(
        opened.is_some(),
        "knocker cannot connect after knocking; log:\n{}",
        d.log_text()
    );
    assert!(
        !can_connect(&pair, second, pair.server4),
        "a second address got in without knocking"
    );
    std::thread::sleep(Duration::from_secs(3));
    let closed = wait_for(Duration::from_secs(2), || {
        (!can_connect(&pair, pair.client4, pair.server4)).then_some(())
    });
    assert!(
        closed.is_some(),
        "door still open after command_delay; log:\n{}",
        d.log_text()
    );
    let set = pair.server.must("nft list set inet tpk knocked");
    assert!(
        !set.contains(&pair.client4.to_string()),
        "address left in the set: {set}"
    );
}

/// The `<NAME>` block of knock.conf(5)'s EXAMPLES, roff escapes undone.
fn manual_recipe(name: &str) -> String {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/man/knock.conf.5"))
        .unwrap()
        .replace("\\-", "-");
    let start = page
        .find(&format!("\n<{name}>\n"))
        .unwrap_or_else(|| panic!("knock.conf.5 has no <{name}> recipe"));
    let end = page[start..].find(&format!("</{name}>\n")).unwrap() + start;
    format!("{}</{name}>\n", &page[start + 1..end])
}

/// knock.conf(5)'s ufw recipe as printed, with ufw enabled (default deny
/// incoming) in the server namespace. ufw keeps its state in /etc/ufw and
/// /etc/default/ufw: the daemon and ufw run in a mount namespace where
/// copies of those are mounted over them, so the host's ufw stays as it was.
#[test]
fn ufw_recipe_of_the_manual_opens_for_the_knocker_only_and_closes() {
    let pair = Pair::new();
    let dir = TempDir::new("fw-ufw");
    for tool in ["/usr/sbin/ufw", "/etc/ufw/ufw.conf", "/etc/default/ufw"] {
        assert!(
            std::path::Path::new(tool).exists(),
            "{tool} missing: install the Debian package ufw (`make test` does)"
        );
    }
    let second = Ipv4Addr::new(10, 199, 0, 3);
    pair.client
        .must(&format!("ip addr add {second}/24 dev {}", pair.client_if));
    must(&format!(
        "cp -a /etc/ufw '{ufw}' && cp /etc/default/ufw '{default}' && \
         : > '{ufw}/sysctl.conf'",
        ufw = dir.join("ufw").display(),
        default = dir.join("default-ufw").display()
    ));
    let listener = pair
        .server
        .run(|| std::net::TcpListener::bind("0.0.0.0:22").unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            drop(conn);
        }
    });

    let recipe = manual_recipe("SSH_UFW");
    assert!(
        recipe.contains("\n sequence      = udp:31338 tcp:4712:fu tcp:8023:s\n"),
        "the recipe's sequence changed: update the knock below\n{recipe}"
    );
    let conf = write_config(
        &dir,
        &recipe.replace("command_delay = 60", "command_delay = 3"),
    );

    // ufw enabled, then the daemon, both behind the private /etc/ufw.
    let log = dir.join("daemon.log");
    let script = format!(
        "mount -t tmpfs tpk-run /run && \
         mount --bind '{ufw}' /etc/ufw && mount --bind '{default}' /etc/default/ufw && \
         /usr/sbin/ufw --force enable >&2 && \
         exec '{bin}' -c '{conf}' -i '{iface}' -p '{pid}' -s '{state}' -d",
        ufw = dir.join("ufw").display(),
        default = dir.join("default-ufw").display(),
        bin = BIN,
        conf = conf.display(),
        iface = pair.server_if,
        pid = dir.join("pid").display(),
        state = dir.join("state").display(),
    );
    let mut cmd = pair.server.command("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let d = Daemon {
        proc: spawn(cmd),
        log,
    };
    d.expect_log("ready:", Duration::from_secs(20));

    assert!(
        !can_connect(&pair, pair.client4, pair.server4),
        "ufw lets port 22 through before any knock"
    );
    knock(
        &pair,
        &[(UDP, 31338, 0), (TCP, 4712, 0x21), (TCP, 8023, 0x02)],
    );
    let opened = wait_for(Duration::from_secs(10), || {
        can_connect(&pair, pair.client4, pair.server4).then_some(())
    });
    assert!(
        opened.is_some(),
        "knocker cannot connect after knocking; log:\n{}",
        d.log_text()
    );
    assert!(
        !can_connect(&pair, second, pair.server4),
        "a second address got in without knocking"
    );
    std::thread::sleep(Duration::from_secs(3));
    let closed = wait_for(Duration::from_secs(10), || {
        (!can_connect(&pair, pair.client4, pair.server4)).then_some(())
    });
    assert!(
        closed.is_some(),
        "door still open after command_delay; log:\n{}",
        d.log_text()
    );
    // The host's ufw never saw any of it.
    let host = std::fs::read_to_string("/etc/ufw/user.rules").unwrap();
    assert!(!host.contains(&pair.client4.to_string()), "{host}");
}

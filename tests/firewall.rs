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

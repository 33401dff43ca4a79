//! Checks the test harness itself: a frame sent from the client namespace
//! arrives at the server's veth end, and guards clean up.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn frame_crosses_the_veth_and_namespaces_are_removed() {
    let names;
    {
        let pair = Pair::new();
        names = (pair.server.name.clone(), pair.client.name.clone());
        // tcpdump in the server namespace sees the UDP frame we send.
        let mut dump = spawn({
            let mut c = pair.server.command("tcpdump");
            c.args([
                "-n",
                "-l",
                "-c",
                "1",
                "-i",
                &pair.server_if,
                "udp port 40404",
            ]);
            c.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null());
            c
        });
        std::thread::sleep(Duration::from_millis(500));
        let l4 = frame::udp(5555, 40404, b"hi");
        let ip = frame::ipv4(pair.client4, pair.server4, 17, l4);
        let f = frame::ether(
            pair.server_mac(),
            pair.client_mac(),
            &[],
            frame::ETH_IPV4,
            &ip,
        );
        for _ in 0..5 {
            pair.send_frames(vec![f.clone()]);
            if dump.wait_timeout(Duration::from_millis(200)).is_some() {
                break;
            }
        }
        let status = dump
            .wait_timeout(Duration::from_secs(3))
            .expect("tcpdump saw no frame");
        assert!(status.success());
    }
    let list = must("ip netns list");
    assert!(
        !list.contains(&names.0) && !list.contains(&names.1),
        "namespaces left: {list}"
    );
}

//! systemd's service notification protocol (sd_notify(3)): one datagram of
//! `KEY=value` lines to the socket `$NOTIFY_SOCKET` names, when it names
//! one. The daemon says when it is ready, reloading and stopping, so that
//! `systemctl start` and `systemctl reload` return once it is done.

use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends `state` (one or more `KEY=value` lines); silently nothing when
/// there is no service manager to tell.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = path.to_string_lossy().into_owned();
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    let addr = if let Some(name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name.as_bytes())
    } else {
        SocketAddr::from_pathname(&path)
    };
    if let Ok(addr) = addr {
        let _ = sock.send_to_addr(state.as_bytes(), &addr);
    }
}

/// Start-up is done: the daemon captures.
pub fn ready() {
    notify("READY=1");
}

/// A reload (SIGHUP) begins; [`ready`] ends it. `MONOTONIC_USEC` lets the
/// service manager tell this reload from an earlier one.
pub fn reloading() {
    notify(&reloading_message(crate::sys::daemon::monotonic_usec()));
}

/// The reload message at `usec` on `CLOCK_MONOTONIC`.
fn reloading_message(usec: u64) -> String {
    format!("RELOADING=1\nMONOTONIC_USEC={usec}")
}

/// Shutdown begins.
pub fn stopping() {
    notify("STOPPING=1");
}

/// A one-line status `systemctl status` shows.
pub fn status(text: &str) {
    let line: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
    notify(&format!("STATUS={line}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reload_message_carries_the_monotonic_clock() {
        assert_eq!(
            reloading_message(12_345),
            "RELOADING=1\nMONOTONIC_USEC=12345"
        );
        let a = crate::sys::daemon::monotonic_usec();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let b = crate::sys::daemon::monotonic_usec();
        assert!(b >= a + 5_000 && b < a + 5_000_000, "{a} {b}");
    }
}

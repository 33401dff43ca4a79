//! The `tportknockd -l` listing: one interface per line, columns aligned.

use std::borrow::Cow;
use std::net::IpAddr;

use crate::capture::netif::Interface;

/// The `tportknockd -l` listing: one interface per line, columns aligned:
/// name, index, link type, state, addresses.
pub fn format_list(ifaces: &[Interface]) -> String {
    let names: Vec<String> = ifaces
        .iter()
        .map(|i| crate::daemon::log::sanitize(&i.name))
        .collect();
    let types: Vec<Cow<'static, str>> = ifaces.iter().map(Interface::link_type).collect();
    let name_w = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    let index_w = ifaces
        .iter()
        .map(|i| i.index.to_string().len())
        .max()
        .unwrap_or(0);
    let type_w = types.iter().map(|t| t.len()).max().unwrap_or(0);
    let mut out = String::new();
    for ((iface, name), kind) in ifaces.iter().zip(&names).zip(&types) {
        let state = match (iface.up, iface.running) {
            (false, _) => "down",
            (true, true) => "up",
            (true, false) => "up,no-carrier",
        };
        let addrs = if iface.addrs.is_empty() {
            "-".to_string()
        } else {
            iface
                .addrs
                .iter()
                .map(IpAddr::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        };
        let line = format!(
            "{name:<name_w$}  {:>index_w$}  {kind:<type_w$}  {state:<13}  {addrs}",
            iface.index
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    #[test]
    fn listing() {
        let ifaces = [
            Interface {
                name: "lo".into(),
                index: 1,
                hatype: 772,
                up: true,
                running: true,
                addrs: vec![v4(127, 0, 0, 1), "::1".parse().unwrap()],
                vlan: None,
            },
            Interface {
                name: "ppp0".into(),
                index: 12,
                hatype: 512,
                up: false,
                running: false,
                addrs: vec![],
                vlan: None,
            },
            Interface {
                name: "tun\u{1}".into(),
                index: 3,
                hatype: 0xfffe,
                up: true,
                running: false,
                addrs: vec![v4(10, 8, 0, 1)],
                vlan: None,
            },
        ];
        assert_eq!(
            format_list(&ifaces),
            "lo         1  loopback  up             127.0.0.1 ::1\n\
             ppp0      12  ppp       down           -\n\
             tun\\u{1}   3  none      up,no-carrier  10.8.0.1\n"
        );
    }
}

//! Webhook destinations. Campaign owners choose webhook URLs, so a URL could aim the
//! reward-worker at what only the cluster reaches (the cloud metadata endpoint, the database,
//! other services' admin ports): server-side request forgery. These say which addresses are on
//! the public internet; the gateway refuses non-public IP literals when a campaign is created,
//! and the reward-worker checks every address it connects to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::Url;

/// Whether `ip` is an address of the public internet: not loopback, private, link-local,
/// shared (CGNAT), multicast, documentation, benchmarking or reserved, also when an IPv6
/// address carries an IPv4 one (mapped, translated, compatible, NAT64, 6to4), and not in an
/// IPv6 range that reaches IPv4 hosts by other means (local-use NAT64, Teredo).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let [first, second, third, ..] = ip.segments();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || ip.is_unique_local()
        || ip.is_unicast_link_local()
        || (first & 0xffc0) == 0xfec0
        || (first == 0x2001 && second == 0x0db8)
        // Local-use NAT64 (RFC 8215, 64:ff9b:1::/48): a translator of the operator's own that
        // reaches IPv4 addresses, private ones included, wherever the prefix places them.
        || (first == 0x64 && second == 0xff9b && third == 1)
        // Teredo (RFC 4380, 2001::/32): tunnels to an IPv4 host through a relay.
        || (first == 0x2001 && second == 0))
}

/// The IPv4 address inside an IPv6 address that reaches it: IPv4-mapped (`::ffff:0:0/96`),
/// IPv4-translated (`::ffff:0:0:0/96`, RFC 2765), IPv4-compatible (`::/96`, deprecated but
/// still routed by some stacks), well-known NAT64 (`64:ff9b::/96`) and 6to4 (`2002::/16`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let v4 = |high: u16, low: u16| Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
    match s {
        [0, 0, 0, 0, 0, 0, high, low]
        | [0, 0, 0, 0, 0xffff, 0, high, low]
        | [0x64, 0xff9b, 0, 0, 0, 0, high, low] => Some(v4(high, low)),
        [0x2002, high, low, ..] => Some(v4(high, low)),
        _ => None,
    }
}

/// The host of `url` when it is an IP literal (`http://10.0.0.1/`, `http://[::1]/`).
pub fn literal_ip(url: &Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_not_public() {
        for address in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.0.8",
            "198.18.0.1",
            "203.0.113.9",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:c0a8:0101::1",
            // IPv4-compatible, IPv4-translated, local-use NAT64, Teredo.
            "::127.0.0.1",
            "::10.0.0.1",
            "::ffff:0:127.0.0.1",
            "::ffff:0:a9fe:a9fe",
            "64:ff9b:1::a9fe:a9fe",
            "64:ff9b:1::808:808",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        ] {
            assert!(!is_public(address.parse().unwrap()), "{address}");
        }
    }

    #[test]
    fn internet_addresses_are_public() {
        for address in [
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.1",
            "172.32.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "::8.8.8.8",
            "2001:4860:4860::8888",
        ] {
            assert!(is_public(address.parse().unwrap()), "{address}");
        }
    }

    #[test]
    fn literal_hosts_are_found_in_urls() {
        for (url, ip) in [
            ("http://127.0.0.1:8080/hook", Some("127.0.0.1")),
            ("http://[::1]/hook", Some("::1")),
            (
                "https://user@169.254.169.254/latest",
                Some("169.254.169.254"),
            ),
            ("http://0x7f.1/", Some("127.0.0.1")),
            ("https://hooks.example.com/x", None),
        ] {
            let parsed = Url::parse(url).unwrap();
            assert_eq!(
                literal_ip(&parsed),
                ip.map(|ip| ip.parse().unwrap()),
                "{url}"
            );
        }
    }
}

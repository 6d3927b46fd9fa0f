//! Where webhooks may go. Campaign owners choose webhook URLs, so without a check a URL could
//! make the worker call what only the cluster reaches (the cloud metadata endpoint, the
//! database, other services' admin ports): server-side request forgery. Unless
//! `WEBHOOK_ALLOW_PRIVATE_NETWORKS` is set (local development), a webhook whose address is not
//! public is refused for good. IP literals are checked before the request and host names in the
//! HTTP client's resolver, so the address checked is the address connected to (a name cannot
//! resolve to a public address for the check and a private one for the connection). Redirects
//! are not followed (see `main`).

use std::error::Error as StdError;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// A webhook destination refused because it is not on the public internet.
#[derive(Debug)]
pub(crate) struct NotPublic {
    host: String,
    addresses: Vec<IpAddr>,
}

impl fmt::Display for NotPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addresses: Vec<String> = self.addresses.iter().map(IpAddr::to_string).collect();
        write!(
            f,
            "webhook host {} has no public address ({}); set WEBHOOK_ALLOW_PRIVATE_NETWORKS=true to allow it",
            self.host,
            addresses.join(", ")
        )
    }
}

impl StdError for NotPublic {}

/// Whether `ip` is an address of the public internet: not loopback, private, link-local,
/// shared (CGNAT), multicast, documentation, benchmarking or reserved, also when an IPv6
/// address carries an IPv4 one (mapped, NAT64, 6to4).
pub(crate) fn is_public(ip: IpAddr) -> bool {
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
    let [first, second, ..] = ip.segments();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || ip.is_unique_local()
        || ip.is_unicast_link_local()
        || (first & 0xffc0) == 0xfec0
        || (first == 0x2001 && second == 0x0db8))
}

/// The IPv4 address inside an IPv4-mapped, NAT64 (`64:ff9b::/96`) or 6to4 (`2002::/16`)
/// address: connecting to it reaches that IPv4 address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let v4 = |high: u16, low: u16| Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
    match s {
        [0x64, 0xff9b, 0, 0, 0, 0, high, low] => Some(v4(high, low)),
        [0x2002, high, low, ..] => Some(v4(high, low)),
        _ => None,
    }
}

/// Refuses a URL whose host is a non-public IP literal: the resolver never sees those.
pub(crate) fn check_literal_host(url: &reqwest::Url) -> Result<(), NotPublic> {
    let Some(host) = url.host_str() else {
        return Ok(());
    };
    match host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        Ok(ip) if !is_public(ip) => Err(NotPublic {
            host: host.to_owned(),
            addresses: vec![ip],
        }),
        _ => Ok(()),
    }
}

/// The refusal inside a failed request, if that is why it failed.
pub(crate) fn refusal(error: &reqwest::Error) -> Option<&NotPublic> {
    let mut source: Option<&(dyn StdError + 'static)> = error.source();
    while let Some(error) = source {
        if let Some(refused) = error.downcast_ref::<NotPublic>() {
            return Some(refused);
        }
        source = error.source();
    }
    None
}

/// The system resolver, keeping only public addresses; a name with none fails with
/// [`NotPublic`].
#[derive(Debug, Default)]
pub(crate) struct PublicOnlyResolver;

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> =
                all.iter().copied().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                let addresses = all.iter().map(SocketAddr::ip).collect();
                return Err(Box::new(NotPublic { host, addresses }) as _);
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
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
        ] {
            assert!(is_public(address.parse().unwrap()), "{address}");
        }
    }

    #[test]
    fn literal_hosts_are_checked_before_any_request() {
        for url in [
            "http://127.0.0.1:8080/hook",
            "http://[::1]/hook",
            "https://169.254.169.254/latest/meta-data",
            "http://[::ffff:a00:1]/",
        ] {
            let error = check_literal_host(&url.parse().unwrap()).unwrap_err();
            assert!(error.to_string().contains("no public address"), "{error}");
        }
        for url in ["https://hooks.example.com/x", "http://93.184.215.14/x"] {
            assert!(check_literal_host(&url.parse().unwrap()).is_ok(), "{url}");
        }
    }

    #[tokio::test]
    async fn names_that_resolve_only_to_internal_addresses_are_refused() {
        let error = match PublicOnlyResolver
            .resolve("localhost".parse().unwrap())
            .await
        {
            Ok(addresses) => panic!("resolved to {:?}", addresses.collect::<Vec<_>>()),
            Err(error) => error,
        };
        let refused = error
            .downcast_ref::<NotPublic>()
            .expect("a NotPublic refusal");
        assert!(
            refused.addresses.iter().all(|ip| ip.is_loopback()),
            "{refused}"
        );
    }
}

//! The client's IP address behind reverse proxies, for the signups-per-IP rule.
//!
//! `X-Forwarded-For` is a list that every proxy appends its peer's address to; its left part is
//! whatever the client wrote. Only the entries appended by proxies we run can be believed, so
//! the client is the right-most entry that is not one of those proxies, and the header is read
//! at all only when the connection itself comes from a trusted proxy (the approach of MDN's
//! "X-Forwarded-For: Security and privacy concerns" and of nginx's `real_ip_recursive`).

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// The networks of the reverse proxies in front of the gateway (`TRUSTED_PROXIES`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TrustedProxies {
    networks: Vec<IpNet>,
}

impl TrustedProxies {
    /// Parses a comma-separated list of CIDR networks or single addresses, such as
    /// `10.0.0.0/8, 192.168.1.7, fd00::/8`. Empty: trust no proxy.
    ///
    /// # Errors
    /// The entry that is neither a network nor an address.
    pub(crate) fn parse(list: &str) -> Result<Self, String> {
        let networks = list
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{entry:?} is not an IP network (CIDR) or address"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { networks })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.networks.iter().any(|network| network.contains(&ip))
    }

    /// The address of the client that sent `request` (see [`TrustedProxies::client_ip`]);
    /// `None` when the connection has no peer address (a test request).
    pub(crate) fn client_of(&self, request: &actix_web::HttpRequest) -> Option<IpAddr> {
        let peer = request.peer_addr()?.ip();
        let forwarded = request
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>();
        Some(self.client_ip(peer, forwarded.into_iter()))
    }

    /// The client's address: the peer's, unless the peer is a trusted proxy; then the right-most
    /// `X-Forwarded-For` entry that is not a trusted proxy. An entry that is not an IP address
    /// ends the walk at the last address a trusted proxy vouched for, so a client cannot pick
    /// its own key by writing garbage. `forwarded_for` holds every `X-Forwarded-For` header
    /// value in order.
    pub(crate) fn client_ip<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl DoubleEndedIterator<Item = &'a str>,
    ) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.contains(client) {
            return client;
        }
        for entry in forwarded_for.flat_map(|v| v.split(',')).rev() {
            let Some(ip) = parse_entry(entry) else {
                return client;
            };
            client = ip;
            if !self.contains(ip) {
                return ip;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5678`,
/// `[2001:db8::1]:443`), as some proxies write it.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|addr| addr.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn client(proxies: &str, peer: &str, headers: &[&str]) -> String {
        TrustedProxies::parse(proxies)
            .unwrap()
            .client_ip(ip(peer), headers.iter().copied())
            .to_string()
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        assert_eq!(client("", "203.0.113.9", &["198.51.100.1"]), "203.0.113.9");
        // A peer outside the trusted networks cannot speak for anyone else.
        assert_eq!(
            client("10.0.0.0/8", "203.0.113.9", &["198.51.100.1"]),
            "203.0.113.9"
        );
    }

    #[test]
    fn the_right_most_untrusted_entry_is_the_client() {
        // The client wrote "1.1.1.1" itself; the proxy appended the real peer.
        assert_eq!(
            client("10.0.0.0/8", "10.0.0.5", &["1.1.1.1, 198.51.100.7"]),
            "198.51.100.7"
        );
        // Two proxies of ours: skip both.
        assert_eq!(
            client(
                "10.0.0.0/8,192.168.0.1",
                "10.0.0.5",
                &["6.6.6.6, 198.51.100.7, 192.168.0.1"]
            ),
            "198.51.100.7"
        );
        // Several header lines are one list.
        assert_eq!(
            client(
                "10.0.0.0/8",
                "10.0.0.5",
                &["6.6.6.6", "198.51.100.7, 10.1.1.1"]
            ),
            "198.51.100.7"
        );
        // Ports and IPv4-mapped IPv6.
        assert_eq!(
            client("10.0.0.0/8", "::ffff:10.0.0.5", &["[2001:db8::1]:443"]),
            "2001:db8::1"
        );
        assert_eq!(
            client("10.0.0.0/8", "10.0.0.5", &["198.51.100.7:5678"]),
            "198.51.100.7"
        );
    }

    #[test]
    fn garbage_or_missing_entries_cannot_choose_the_key() {
        // A client cannot vary its key with unparsable text: the walk stops at the proxy.
        assert_eq!(
            client("10.0.0.0/8", "10.0.0.5", &["random-1, 10.0.0.9"]),
            "10.0.0.9"
        );
        assert_eq!(client("10.0.0.0/8", "10.0.0.5", &["nonsense"]), "10.0.0.5");
        assert_eq!(client("10.0.0.0/8", "10.0.0.5", &[]), "10.0.0.5");
        // Only trusted entries: the left-most of them.
        assert_eq!(
            client("10.0.0.0/8", "10.0.0.5", &["10.2.2.2, 10.3.3.3"]),
            "10.2.2.2"
        );
    }

    #[test]
    fn bad_lists_are_refused() {
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("proxy.local").is_err());
        assert_eq!(
            TrustedProxies::parse(" , ").unwrap(),
            TrustedProxies::default()
        );
    }
}

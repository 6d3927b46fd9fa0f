//! Where webhooks may go: public addresses only (see `domain::waitlist::webhook_address`),
//! unless `WEBHOOK_ALLOW_PRIVATE_NETWORKS` is set (local development). IP literals are checked
//! before the request and host names in the HTTP client's resolver, so the address checked is
//! the address connected to (a name cannot resolve to a public address for the check and a
//! private one for the connection). Redirects are not followed (see `main`).

use std::error::Error as StdError;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use domain::waitlist::webhook_address::{is_public, literal_ip};
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

/// Refuses a URL whose host is a non-public IP literal: the resolver never sees those.
pub(crate) fn check_literal_host(url: &reqwest::Url) -> Result<(), NotPublic> {
    match literal_ip(url) {
        Some(ip) if !is_public(ip) => Err(NotPublic {
            host: ip.to_string(),
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

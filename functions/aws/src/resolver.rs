//! DNS through the system resolver (tokio's `lookup_host`), for the checks of
//! client webhook URLs.

use async_trait::async_trait;
use std::net::IpAddr;
use std::time::Duration;
use videojobs_core::ports::HostResolver;

/// A lookup that takes longer than this counts as unresolved.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

#[async_trait]
impl HostResolver for SystemResolver {
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<IpAddr>, String> {
        match tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((host, port))).await {
            Ok(Ok(addrs)) => Ok(addrs.map(|a| a.ip()).collect()),
            Ok(Err(err)) => Err(format!("looking up {host}: {err}")),
            Err(_) => Err(format!("looking up {host}: timed out")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn localhost_resolves_to_loopback() {
        let addrs = SystemResolver.resolve("localhost", 443).await.unwrap();
        assert!(!addrs.is_empty());
        assert!(addrs.iter().all(|ip| ip.is_loopback()), "{addrs:?}");
    }

    #[tokio::test]
    async fn a_name_under_the_invalid_domain_does_not_resolve() {
        assert!(SystemResolver.resolve("nothing.invalid", 443).await.is_err());
    }
}

//! Where a client notification may go (checked at create, and again at
//! delivery with DNS) and a user's signing secrets, made on first use: the
//! rules the API and the notifier share. The values are in `model::notification`.

use crate::model::error::StoreError;
use crate::model::ids::UserId;
use crate::model::notification::*;
use crate::model::signing::WebhookSecret;
use crate::ports::{HostResolver, WebhookSecrets};
use std::net::SocketAddr;
use time::OffsetDateTime;
use url::Url;

/// The user's secrets, made on first use.
pub async fn secrets_of(store: &dyn WebhookSecrets, user: &UserId) -> Result<UserWebhookSecrets, StoreError> {
    if let Some(secrets) = store.webhook_secrets(user).await? {
        return Ok(secrets);
    }
    store.create_webhook_secret(user, &WebhookSecret::generate_text()).await
}

/// The keys that sign a delivery to `user` at `now` (made on first use):
/// the current secret and, during a rotation's grace, the one it replaced.
pub async fn signing_keys(store: &dyn WebhookSecrets, user: &UserId, now: OffsetDateTime) -> Result<Vec<WebhookSecret>, StoreError> {
    let secrets = secrets_of(store, user).await?;
    secrets
        .signing_secrets(now)
        .into_iter()
        .map(WebhookSecret::parse)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| StoreError::Internal("a stored webhook secret does not parse".into()))
}
/// Checks a `webhook_url` all the way: scheme, then every address its host
/// resolves to (one private address among public ones refuses it, since DNS
/// may hand out either). The caller connects to `addr` only.
pub async fn check_destination(url: &Url, policy: WebhookPolicy, resolver: &dyn HostResolver) -> Result<Destination, DestinationError> {
    let port = url.port_or_known_default().unwrap_or(443);
    if let Some(ip) = check_literal(url, policy)? {
        return Ok(Destination { url: url.clone(), host_name: None, addr: SocketAddr::new(ip, port) });
    }
    let host = url.host_str().ok_or(DestinationError::NoHost)?;
    let addrs = resolver.resolve(host, port).await.map_err(|detail| DestinationError::Unresolved { detail })?;
    let Some(first) = addrs.first().copied() else {
        return Err(DestinationError::Unresolved { detail: "no addresses".into() });
    };
    for ip in &addrs {
        policy.check(*ip, port)?;
    }
    Ok(Destination { url: url.clone(), host_name: Some(host.to_owned()), addr: SocketAddr::new(first, port) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use std::collections::HashMap;
    use std::net::IpAddr;

    const DEPLOYED: WebhookPolicy = WebhookPolicy { allow_http: false, loopback: LoopbackPorts::NONE };
    fn local() -> WebhookPolicy {
        WebhookPolicy { allow_http: true, loopback: LoopbackPorts::range(1, 65535).refusing([5000]) }
    }

    struct FakeDns(HashMap<&'static str, Vec<IpAddr>>);

    #[async_trait]
    impl HostResolver for FakeDns {
        async fn resolve(&self, host: &str, _port: u16) -> Result<Vec<IpAddr>, String> {
            self.0.get(host).cloned().ok_or_else(|| "NXDOMAIN".into())
        }
    }

    fn dns() -> FakeDns {
        FakeDns(HashMap::from([
            ("hooks.example.com", vec!["93.184.216.34".parse().unwrap()]),
            ("localhost", vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()]),
            ("mixed.example.com", vec!["93.184.216.34".parse().unwrap(), "10.0.0.7".parse().unwrap()]),
            ("metadata.example.com", vec!["169.254.169.254".parse().unwrap()]),
            ("empty.example.com", vec![]),
        ]))
    }

    async fn check(url: &str, policy: WebhookPolicy) -> Result<Destination, DestinationError> {
        check_destination(&Url::parse(url).unwrap(), policy, &dns()).await
    }

    #[tokio::test]
    async fn a_public_host_is_pinned_to_the_address_it_resolved_to() {
        let dest = check("https://hooks.example.com/in", DEPLOYED).await.unwrap();
        assert_eq!(dest.addr, "93.184.216.34:443".parse().unwrap());
        assert_eq!(dest.host_name.as_deref(), Some("hooks.example.com"));
        let dest = check("https://hooks.example.com:8443/in", DEPLOYED).await.unwrap();
        assert_eq!(dest.addr.port(), 8443);
    }

    #[tokio::test]
    async fn ip_literals_at_loopback_private_or_metadata_addresses_are_refused_in_a_deployment() {
        for url in [
            "https://127.0.0.1/x",
            "https://10.0.0.1/x",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/x",
            "https://[fd00:ec2::254]/x",
            "https://[::ffff:10.0.0.1]/x",
            "https://0.0.0.0/x",
            "https://2130706433/x",
            "https://0x7f.1/x",
            "https://100.64.1.1/x",
        ] {
            let err = check(url, DEPLOYED).await.unwrap_err();
            assert!(matches!(err, DestinationError::NotPublic { .. }), "{url}: {err:?}");
        }
    }

    #[tokio::test]
    async fn names_resolving_to_non_public_addresses_are_refused() {
        assert!(matches!(check("https://localhost/x", DEPLOYED).await, Err(DestinationError::NotPublic { .. })));
        assert!(matches!(check("https://mixed.example.com/x", DEPLOYED).await, Err(DestinationError::NotPublic { .. })));
        let err = check("https://metadata.example.com/x", DEPLOYED).await.unwrap_err();
        assert_eq!(err, DestinationError::NotPublic { addr: "169.254.169.254".parse().unwrap(), kind: AddressKind::LinkLocal });
        assert!(err.to_string().contains("link-local"));
    }

    #[tokio::test]
    async fn an_unresolvable_host_is_refused_without_its_detail() {
        let err = check("https://nowhere.example.com/x", DEPLOYED).await.unwrap_err();
        assert!(err.is_transient());
        assert!(!err.to_string().contains("NXDOMAIN"));
        assert!(check("https://empty.example.com/x", DEPLOYED).await.unwrap_err().is_transient());
    }

    #[tokio::test]
    async fn the_local_stack_may_allow_loopback_and_http_but_never_private_addresses() {
        assert!(check("http://127.0.0.1:9000/x", local()).await.is_ok());
        assert!(check("http://localhost:9000/x", local()).await.is_ok());
        assert!(matches!(check("http://10.0.0.1/x", local()).await, Err(DestinationError::NotPublic { .. })));
        assert!(matches!(check("http://169.254.169.254/x", local()).await, Err(DestinationError::NotPublic { .. })));
        assert_eq!(check("http://hooks.example.com/x", DEPLOYED).await.unwrap_err(), DestinationError::Scheme);
        assert_eq!(check("ftp://hooks.example.com/x", local()).await.unwrap_err(), DestinationError::Scheme);
    }
}

//! DNS in memory: a host answers the addresses the test gave it, or fails.

use crate::{Memory, Moment};
use async_trait::async_trait;
use std::net::IpAddr;
use videojobs_core::model::notification::Destination;
use videojobs_core::ports::{HostResolver, NotificationPoster};

/// One notification as a client endpoint received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    pub url: String,
    /// The `webhook-id` header: one per job and status.
    pub id: String,
    pub body: Vec<u8>,
    /// What the endpoint answered.
    pub status: u16,
}

impl Memory {
    /// What a client endpoint at `url` answers from now on (none: it cannot be reached).
    pub fn endpoint_answers(&self, url: &str, status: Option<u16>) {
        let mut state = self.lock();
        match status {
            Some(status) => state.endpoints.insert(url.to_owned(), status),
            None => state.endpoints.remove(url),
        };
    }

    /// Every notification posted so far, in order.
    pub fn posted(&self) -> Vec<Posted> {
        self.lock().posted.clone()
    }

    /// What resolving `host` answers from now on (no addresses: it fails).
    pub fn resolve_to(&self, host: &str, addresses: Vec<IpAddr>) {
        self.lock().hosts.insert(host.to_ascii_lowercase(), addresses);
    }
}

#[async_trait]
impl HostResolver for Memory {
    async fn resolve(&self, host: &str, _port: u16) -> Result<Vec<IpAddr>, String> {
        self.faults().enter("HostResolver::resolve", Moment::Before).map_err(|e| e.to_string())?;
        match self.lock().hosts.get(&host.to_ascii_lowercase()) {
            Some(addresses) if !addresses.is_empty() => Ok(addresses.clone()),
            _ => Err(format!("no address for {host}")),
        }
    }
}

#[async_trait]
impl NotificationPoster for Memory {
    async fn post(
        &self,
        destination: &Destination,
        id: &str,
        _unix_timestamp: i64,
        _signature: &str,
        body: Vec<u8>,
    ) -> Result<u16, String> {
        self.pause_outside("NotificationPoster::post").await;
        self.faults().enter("NotificationPoster::post", Moment::Before).map_err(|e| e.to_string())?;
        let url = destination.url.to_string();
        let mut state = self.lock();
        let Some(status) = state.endpoints.get(&url).copied() else {
            return Err(format!("{url} cannot be reached"));
        };
        state.posted.push(Posted { url, id: id.to_owned(), body, status });
        Ok(status)
    }
}

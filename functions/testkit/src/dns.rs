//! DNS in memory: a host answers the addresses the test gave it, or fails.

use crate::{Memory, Moment};
use async_trait::async_trait;
use std::net::IpAddr;
use videojobs_core::ports::HostResolver;

impl Memory {
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

//! Which addresses a client notification may be sent to. A `webhook_url` is
//! chosen by the client, so without this check it would let anyone make our
//! worker send requests into our own network (SSRF): the cloud metadata
//! service, a database on a private subnet, a service on loopback. Only public
//! unicast addresses pass; the local stack may also allow loopback.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use url::{Host, Url};

/// What kind of address an IP is, as far as sending requests to it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressKind {
    /// Routable on the internet: the only kind a deployment sends to.
    Public,
    /// `127.0.0.0/8` and `::1`: this machine.
    Loopback,
    /// RFC 1918, IPv6 unique local (`fc00::/7`, which holds AWS's `fd00:ec2::254`), site-local.
    Private,
    /// `169.254.0.0/16` (the metadata service `169.254.169.254` is here) and `fe80::/10`.
    LinkLocal,
    /// Carrier-grade NAT, `100.64.0.0/10`.
    SharedAddressSpace,
    /// `0.0.0.0` and `::`.
    Unspecified,
    /// `224.0.0.0/4` and `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `192.0.2.0/24`, `198.51.100.0/24`, `203.0.113.0/24`, `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// Everything else that is not routable on the internet: `0.0.0.0/8`,
    /// `192.0.0.0/24`, benchmarking `198.18.0.0/15`, `240.0.0.0/4`, Teredo,
    /// IPv4-compatible IPv6, discard-only `100::/64`, unassigned IPv6.
    Reserved,
}

impl AddressKind {
    /// The kind in words, for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            AddressKind::Public => "public",
            AddressKind::Loopback => "loopback",
            AddressKind::Private => "private",
            AddressKind::LinkLocal => "link-local",
            AddressKind::SharedAddressSpace => "shared (carrier-grade NAT)",
            AddressKind::Unspecified => "unspecified",
            AddressKind::Multicast => "multicast",
            AddressKind::Broadcast => "broadcast",
            AddressKind::Documentation => "documentation",
            AddressKind::Reserved => "reserved",
        }
    }
}

/// The kind of `ip`; an IPv4 address wrapped in IPv6 (mapped, NAT64, 6to4) counts as the address it wraps.
pub fn classify(ip: IpAddr) -> AddressKind {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressKind {
    use AddressKind::*;
    if ip.is_broadcast() {
        return Broadcast;
    }
    match ip.octets() {
        [0, 0, 0, 0] => Unspecified,
        [0, ..] => Reserved,
        [127, ..] => Loopback,
        [10, ..] | [172, 16..=31, ..] | [192, 168, ..] => Private,
        [169, 254, ..] => LinkLocal,
        [100, 64..=127, ..] => SharedAddressSpace,
        [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _] => Documentation,
        [192, 0, 0, _] | [192, 88, 99, _] | [198, 18..=19, ..] => Reserved,
        [224..=239, ..] => Multicast,
        [240..=255, ..] => Reserved,
        _ => Public,
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressKind {
    use AddressKind::*;
    // An IPv4 address in IPv6 clothing is what it wraps.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    match s {
        [0, 0, 0, 0, 0, 0, 0, 0] => Unspecified,
        [0, 0, 0, 0, 0, 0, 0, 1] => Loopback,
        // IPv4-compatible (deprecated): refused whatever it wraps.
        [0, 0, 0, 0, 0, 0, _, _] => Reserved,
        // NAT64 reaches the IPv4 address it embeds.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => classify_v4(embedded(hi, lo)),
        [0x64, 0xff9b, 1, ..] => Private,
        // 6to4 also reaches the IPv4 address it embeds.
        [0x2002, hi, lo, ..] => classify_v4(embedded(hi, lo)),
        [0x2001, 0, ..] => Reserved,
        [0x2001, 0xdb8, ..] => Documentation,
        [0x100, 0, 0, 0, ..] => Reserved,
        [first, second, ..] => {
            if first & 0xfe00 == 0xfc00 {
                Private
            } else if first & 0xffc0 == 0xfe80 {
                LinkLocal
            } else if first & 0xffc0 == 0xfec0 {
                Private
            } else if first & 0xff00 == 0xff00 {
                Multicast
            } else if first == 0x3fff && second & 0xf000 == 0 {
                Documentation
            } else if first & 0xe000 == 0x2000 {
                Public
            } else {
                Reserved
            }
        }
    }
}

/// What a deployment allows a `webhook_url` to point at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WebhookPolicy {
    /// `http://` too (the local stack).
    pub allow_http: bool,
    /// The loopback ports allowed too (the local stack and tests; none in a deployment).
    pub loopback: LoopbackPorts,
}

impl WebhookPolicy {
    /// Whether a notification may be sent to an address of this kind at `port`.
    pub fn allows(&self, kind: AddressKind, port: u16) -> bool {
        kind == AddressKind::Public || (kind == AddressKind::Loopback && self.loopback.allows(port))
    }

    /// Refuses `ip` at `port` unless allowed, saying why.
    pub fn check(&self, ip: IpAddr, port: u16) -> Result<(), DestinationError> {
        let kind = classify(ip);
        match self.allows(kind, port) {
            true => Ok(()),
            false if kind == AddressKind::Loopback && self.loopback != LoopbackPorts::NONE => Err(DestinationError::LoopbackPort { port }),
            false => Err(DestinationError::NotPublic { addr: ip, kind }),
        }
    }
}

/// The loopback ports a URL may name: the ones someone named
/// (`LOOPBACK_WEBHOOK_PORTS`, a port or a range `from-to`), never the local
/// stack's own (the emulator, the API, the local provider), whatever the
/// range says: a notification to the emulator's reset route would wipe
/// every table, queue and bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoopbackPorts {
    /// The named ports, inclusive; `None`: no loopback port at all.
    range: Option<(u16, u16)>,
    /// The stack's own ports (0: an empty place).
    refused: [u16; 4],
}

impl LoopbackPorts {
    /// No loopback port (a deployment).
    pub const NONE: Self = Self { range: None, refused: [0; 4] };

    /// The ports from `from` to `to`, both included.
    pub fn range(from: u16, to: u16) -> Self {
        Self { range: Some((from.min(to), from.max(to))), refused: [0; 4] }
    }

    /// Reads `8080` or `8000-8999`; an empty text names none.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Self::NONE);
        }
        let port = |p: &str| p.trim().parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("{p:?} is not a port"));
        match text.split_once('-') {
            Some((from, to)) => Ok(Self::range(port(from)?, port(to)?)),
            None => port(text).map(|p| Self::range(p, p)),
        }
    }

    /// These ports too are refused, whatever the range (the stack's own; at most four).
    pub fn refusing(mut self, ports: impl IntoIterator<Item = u16>) -> Self {
        for port in ports {
            if port == 0 || self.refused.contains(&port) {
                continue;
            }
            if let Some(free) = self.refused.iter_mut().find(|p| **p == 0) {
                *free = port;
            }
        }
        self
    }

    /// Whether a loopback URL may name `port`.
    pub fn allows(&self, port: u16) -> bool {
        self.range.is_some_and(|(from, to)| (from..=to).contains(&port)) && !self.refused.contains(&port)
    }
}

/// Why a `webhook_url` may not be called.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    /// Not `https` (nor `http` where the policy allows it).
    #[error("must be an https URL")]
    Scheme,
    /// The URL names no host.
    #[error("must name a host")]
    NoHost,
    /// An IP literal, or an address the host resolves to, is not one the policy allows.
    #[error("points at {addr}, a {} address; only public addresses are allowed", kind.describe())]
    NotPublic {
        /// The refused address.
        addr: IpAddr,
        /// What kind of address it is.
        kind: AddressKind,
    },
    /// A loopback address at a port not named in `LOOPBACK_WEBHOOK_PORTS`, or
    /// one of the local stack's own (the local stack only).
    #[error("points at loopback port {port}, which is not open to webhooks here (LOOPBACK_WEBHOOK_PORTS)")]
    LoopbackPort {
        /// The refused port.
        port: u16,
    },
    /// The host's lookup failed or gave no address; a network problem that may pass.
    #[error("names a host that could not be resolved")]
    Unresolved {
        /// What the resolver said, for the logs.
        detail: String,
    },
}

impl DestinationError {
    /// A network problem rather than a bad URL.
    pub fn is_transient(&self) -> bool {
        matches!(self, DestinationError::Unresolved { .. })
    }
}

/// A checked destination: the URL and the one address to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The URL as the client gave it.
    pub url: Url,
    /// The host name to pin to `addr` (none for an IP literal).
    pub host_name: Option<String>,
    /// The one address to connect to, with its port.
    pub addr: SocketAddr,
}

/// The checks that need no DNS: scheme, host, and an IP literal's address.
/// `Ok(Some(addr))` for an IP literal, `Ok(None)` for a name to resolve.
pub fn check_literal(url: &Url, policy: WebhookPolicy) -> Result<Option<IpAddr>, DestinationError> {
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_http => {}
        _ => return Err(DestinationError::Scheme),
    }
    let ip = match url.host() {
        None => return Err(DestinationError::NoHost),
        Some(Host::Domain(name)) => {
            // A bare number is a host the resolver may read as an IPv4 address.
            match name.parse::<IpAddr>() {
                Ok(ip) => ip,
                Err(_) if name.is_empty() => return Err(DestinationError::NoHost),
                Err(_) => return Ok(None),
            }
        }
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip),
    };
    policy.check(ip, url.port_or_known_default().unwrap_or(443))?;
    Ok(Some(ip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use AddressKind::*;

    fn kind(text: &str) -> AddressKind {
        classify(text.parse().unwrap_or_else(|_| panic!("{text} is an address")))
    }

    #[test]
    fn public_ipv4_and_ipv6_addresses_are_public() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.1.1",
            "192.167.1.1",
            "198.17.255.255",
            "198.20.0.1",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "2001:4860:4860::8888",
        ] {
            assert_eq!(kind(ip), Public, "{ip}");
        }
    }

    #[test]
    fn loopback_is_loopback_in_every_spelling() {
        for ip in ["127.0.0.1", "127.255.255.254", "::1", "::ffff:127.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::1"] {
            assert_eq!(kind(ip), Loopback, "{ip}");
        }
    }

    #[test]
    fn private_ranges_are_private() {
        for ip in [
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.0.1",
            "192.168.255.255",
            "fc00::1",
            "fd00:ec2::254",
            "fdff:ffff::1",
            "fec0::1",
            "::ffff:10.0.0.1",
            "::ffff:192.168.1.1",
            "64:ff9b:1::1",
            "2002:0a00:0001::1",
        ] {
            assert_eq!(kind(ip), Private, "{ip}");
        }
    }

    #[test]
    fn link_local_including_the_metadata_service_is_link_local() {
        for ip in
            ["169.254.169.254", "169.254.0.1", "169.254.255.255", "fe80::1", "febf::1", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe"]
        {
            assert_eq!(kind(ip), LinkLocal, "{ip}");
        }
    }

    #[test]
    fn shared_unspecified_multicast_broadcast_and_documentation_ranges_are_named() {
        assert_eq!(kind("100.64.0.1"), SharedAddressSpace);
        assert_eq!(kind("100.127.255.255"), SharedAddressSpace);
        assert_eq!(kind("0.0.0.0"), Unspecified);
        assert_eq!(kind("::"), Unspecified);
        assert_eq!(kind("::ffff:0.0.0.0"), Unspecified);
        assert_eq!(kind("224.0.0.1"), Multicast);
        assert_eq!(kind("239.255.255.255"), Multicast);
        assert_eq!(kind("ff02::1"), Multicast);
        assert_eq!(kind("255.255.255.255"), Broadcast);
        for ip in ["192.0.2.1", "198.51.100.7", "203.0.113.200", "2001:db8::1", "3fff::1"] {
            assert_eq!(kind(ip), Documentation, "{ip}");
        }
    }

    #[test]
    fn reserved_and_unroutable_ranges_are_reserved() {
        for ip in [
            "0.1.2.3",
            "192.0.0.8",
            "192.88.99.1",
            "198.18.0.1",
            "198.19.255.255",
            "240.0.0.1",
            "254.1.1.1",
            "::10.0.0.1",
            "::8.8.8.8",
            "2001::1",
            "100::1",
            "4000::1",
            "::2",
        ] {
            assert_eq!(kind(ip), Reserved, "{ip}");
        }
    }

    #[test]
    fn every_kind_has_words_for_an_error_message() {
        for k in [Public, Loopback, Private, LinkLocal, SharedAddressSpace, Unspecified, Multicast, Broadcast, Documentation, Reserved] {
            assert!(!k.describe().is_empty());
        }
    }
}

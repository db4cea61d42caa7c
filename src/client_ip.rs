//! Which address a request counts against, for the per-source limits.
//!
//! Forwarding headers (`Forwarded`, `X-Forwarded-For`, `X-Real-IP`) are read
//! only when the socket peer is a configured trusted proxy, and then only the
//! one header those proxies set. The address is needed for a few
//! microseconds to find a bucket (see [`crate::limits`]) and is never
//! stored, logged or returned.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An address range given as `ADDR` or `ADDR/PREFIX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is inside the range (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("not an IP address or CIDR range: {s:?}"))?;
        let addr = canonical(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("bad prefix length in {s:?}"))?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }
}

/// Parses `--trusted-proxy`: addresses or CIDR ranges separated by commas.
pub fn parse_trusted_proxies(s: &str) -> Result<Vec<Cidr>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(Cidr::from_str)
        .collect()
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are the IPv4 address.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// The address a request counts against: the socket peer, or, when the
/// peer is a trusted proxy, the rightmost address of the configured header
/// that is not a trusted proxy. Returns `None` when there is no peer (not a
/// TCP request).
pub fn source_address(
    peer: Option<IpAddr>,
    header_values: &[&str],
    trusted: &[Cidr],
    header: Option<ClientIpHeader>,
) -> Option<IpAddr> {
    let peer = canonical(peer?);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    let Some(header) = header.filter(|_| is_trusted(peer)) else {
        return Some(peer);
    };
    let chain = forwarded_chain(header_values, header);
    // Walk from the proxy nearest to us outwards: the first hop that is not
    // one of our proxies is the client as far as we can tell; anything to
    // its left could be forged by that client.
    let mut client = None;
    for ip in chain.iter().rev() {
        client = Some(*ip);
        if !is_trusted(*ip) {
            break;
        }
    }
    Some(client.unwrap_or(peer))
}

/// The one forwarding header a deployment's proxies set, and that the
/// collector reads (`--client-ip-header`). Only one: a proxy overwrites or
/// appends to the header it sets and passes the others through untouched,
/// so any other header is the client's to forge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientIpHeader {
    /// `X-Forwarded-For: client, proxy1, ...`
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1, ...` (RFC 7239)
    Forwarded,
    /// `X-Real-IP: client` (one address)
    XRealIp,
}

impl ClientIpHeader {
    /// The header's name, lower case, as `--client-ip-header` takes it.
    pub fn name(self) -> &'static str {
        match self {
            ClientIpHeader::XForwardedFor => "x-forwarded-for",
            ClientIpHeader::Forwarded => "forwarded",
            ClientIpHeader::XRealIp => "x-real-ip",
        }
    }
}

/// Addresses the header names, client first. A header with any unparsable
/// element is ignored as a whole.
fn forwarded_chain(header_values: &[&str], header: ClientIpHeader) -> Vec<IpAddr> {
    let values = |_: &str| -> Vec<String> {
        header_values
            .iter()
            .flat_map(|v| v.split(','))
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect()
    };
    let chain = match header {
        ClientIpHeader::Forwarded => values("forwarded")
            .iter()
            .map(|e| {
                e.split(';').find_map(|pair| {
                    let (k, v) = pair.trim().split_once('=')?;
                    k.trim()
                        .eq_ignore_ascii_case("for")
                        .then(|| parse_node(v.trim()))
                        .flatten()
                })
            })
            .collect::<Option<Vec<_>>>(),
        ClientIpHeader::XForwardedFor => values("x-forwarded-for")
            .iter()
            .map(|e| parse_node(e))
            .collect::<Option<Vec<_>>>(),
        ClientIpHeader::XRealIp => {
            let v = values("x-real-ip");
            // One address, or it is not what a proxy set.
            (v.len() == 1)
                .then(|| parse_node(&v[0]))
                .flatten()
                .map(|ip| vec![ip])
        }
    };
    chain.unwrap_or_default()
}

/// One hop: `1.2.3.4`, `1.2.3.4:80`, `"[2001:db8::1]:4711"`, `2001:db8::1`.
fn parse_node(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']')?;
        return rest[..end]
            .parse::<Ipv6Addr>()
            .ok()
            .map(|ip| canonical(IpAddr::V6(ip)));
    }
    let (host, port) = s.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A request's headers, as (name, value) pairs.
    fn headers(pairs: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        pairs.to_vec()
    }

    /// The values of the configured header among `headers`, as the
    /// middleware passes them.
    fn values_of<'a>(
        headers: &'a [(&str, &'a str)],
        header: Option<ClientIpHeader>,
    ) -> Vec<&'a str> {
        headers
            .iter()
            .filter(|(k, _)| header.is_some_and(|h| k.eq_ignore_ascii_case(h.name())))
            .map(|(_, v)| *v)
            .collect()
    }

    #[test]
    fn cidr_ranges() {
        let net: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains(ip("10.1.2.3")));
        assert!(net.contains(ip("::ffff:10.1.2.3")));
        assert!(!net.contains(ip("11.0.0.1")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("example.com".parse::<Cidr>().is_err());
    }

    #[test]
    fn forwarding_headers_only_from_trusted_proxies() {
        use ClientIpHeader::*;
        let trusted = parse_trusted_proxies("127.0.0.1, 10.0.0.0/8").unwrap();
        let src = |peer: &str, h: &[(&str, &str)], header| {
            source_address(Some(ip(peer)), &values_of(h, header), &trusted, header)
        };
        let h = headers(&[("x-forwarded-for", "198.51.100.7, 10.0.0.5")]);
        // Untrusted peer, or no header configured: headers ignored.
        assert_eq!(
            src("203.0.113.1", &h, Some(XForwardedFor)),
            Some(ip("203.0.113.1"))
        );
        assert_eq!(src("127.0.0.1", &h, None), Some(ip("127.0.0.1")));
        // Trusted peer: the rightmost hop that is not a trusted proxy.
        assert_eq!(
            src("127.0.0.1", &h, Some(XForwardedFor)),
            Some(ip("198.51.100.7"))
        );
        // A client cannot hide behind a forged leftmost entry.
        let forged = headers(&[("x-forwarded-for", "1.1.1.1, 198.51.100.7")]);
        assert_eq!(
            src("127.0.0.1", &forged, Some(XForwardedFor)),
            Some(ip("198.51.100.7"))
        );
        let fwd = headers(&[("forwarded", "for=\"[2001:db8::7]:4711\";proto=https")]);
        assert_eq!(
            src("127.0.0.1", &fwd, Some(Forwarded)),
            Some(ip("2001:db8::7"))
        );
        let real = headers(&[("x-real-ip", "198.51.100.9")]);
        assert_eq!(
            src("127.0.0.1", &real, Some(XRealIp)),
            Some(ip("198.51.100.9"))
        );
        let garbage = headers(&[("x-forwarded-for", "<script>")]);
        assert_eq!(
            src("127.0.0.1", &garbage, Some(XForwardedFor)),
            Some(ip("127.0.0.1"))
        );
    }

    #[test]
    fn only_the_configured_header_counts() {
        use ClientIpHeader::*;
        let trusted = parse_trusted_proxies("127.0.0.1").unwrap();
        // nginx set X-Forwarded-For to the client's address; the client
        // added headers of its own.
        let h = headers(&[
            ("x-forwarded-for", "198.51.100.7"),
            ("forwarded", "for=192.0.2.99"),
            ("x-real-ip", "192.0.2.98"),
        ]);
        let src = |header| {
            let values = values_of(&h, Some(header));
            source_address(Some(ip("127.0.0.1")), &values, &trusted, Some(header))
        };
        assert_eq!(src(XForwardedFor), Some(ip("198.51.100.7")));
        assert_eq!(src(Forwarded), Some(ip("192.0.2.99")));
        assert_eq!(src(XRealIp), Some(ip("192.0.2.98")));
        // X-Real-IP names one address; a list is not what a proxy set.
        let two = headers(&[("x-real-ip", "192.0.2.1, 198.51.100.7")]);
        assert_eq!(
            source_address(
                Some(ip("127.0.0.1")),
                &values_of(&two, Some(XRealIp)),
                &trusted,
                Some(XRealIp)
            ),
            Some(ip("127.0.0.1"))
        );
    }
}

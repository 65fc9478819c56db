//! Trusted reverse proxies (`--trusted-proxies`): only a request that comes from one of
//! these address ranges has its `Forwarded` / `X-Forwarded-For` / `X-Forwarded-Proto`
//! headers believed, for the secure-cookie decision, the logs and the audit. Anyone else
//! could write those headers to pass as another address or as HTTPS.

use std::net::IpAddr;

use axum::http::HeaderMap;

/// An address range: an address and how many leading bits of it count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    address: IpAddr,
    bits: u8,
}

impl Range {
    /// `10.0.0.0/8`, `::1`, `192.168.1.7` (one address).
    pub fn parse(text: &str) -> Result<Range, String> {
        let (address, bits) = match text.trim().split_once('/') {
            Some((address, bits)) => (address, Some(bits)),
            None => (text.trim(), None),
        };
        let address: IpAddr = address
            .parse()
            .map_err(|_| format!("'{text}' is not an address or an address range"))?;
        let most = if address.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            Some(bits) => bits
                .parse::<u8>()
                .ok()
                .filter(|bits| *bits <= most)
                .ok_or_else(|| format!("'{text}': the prefix length must be 0 to {most}"))?,
            None => most,
        };
        Ok(Range { address, bits })
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            v4 => v4,
        };
        match (self.address, address) {
            (IpAddr::V4(range), IpAddr::V4(address)) => {
                prefix_eq(&range.octets(), &address.octets(), self.bits)
            }
            (IpAddr::V6(range), IpAddr::V6(address)) => {
                prefix_eq(&range.octets(), &address.octets(), self.bits)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let whole = usize::from(bits / 8);
    let rest = bits % 8;
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        (a[whole] & mask) == (b[whole] & mask)
    }
}

/// Parses the setting's ranges.
pub fn parse_all(texts: &[String]) -> Result<Vec<Range>, String> {
    texts
        .iter()
        .filter(|t| !t.trim().is_empty())
        .map(|t| Range::parse(t))
        .collect()
}

/// Where a request really came from, and whether it came over HTTPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub address: IpAddr,
    pub https: bool,
}

/// The request's origin: the peer itself, or, when the peer is a trusted proxy, what the
/// proxy forwarded (the `Forwarded` header first, then `X-Forwarded-*`).
pub fn origin(peer: IpAddr, headers: &HeaderMap, trusted: &[Range], tls: bool) -> Origin {
    let own = Origin {
        address: peer,
        https: tls,
    };
    if !trusted.iter().any(|range| range.contains(peer)) {
        return own;
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let mut forwarded = own;
    if let Some(value) = header("forwarded") {
        // The last element is the one our proxy added.
        let last = value.rsplit(',').next().unwrap_or_default();
        for pair in last.split(';') {
            let Some((name, value)) = pair.trim().split_once('=') else {
                continue;
            };
            let value = value.trim_matches('"');
            match name.trim().to_ascii_lowercase().as_str() {
                "for" => {
                    let host = value.trim_start_matches('[');
                    let host = host.split(']').next().unwrap_or(host);
                    if let Ok(address) = host.parse() {
                        forwarded.address = address;
                    } else if let Some((address, _port)) = host.rsplit_once(':')
                        && let Ok(address) = address.parse()
                    {
                        forwarded.address = address;
                    }
                }
                "proto" => forwarded.https = value.eq_ignore_ascii_case("https"),
                _ => {}
            }
        }
        return forwarded;
    }
    if let Some(address) = header("x-forwarded-for")
        .and_then(|v| v.rsplit(',').next())
        .and_then(|v| v.trim().parse().ok())
    {
        forwarded.address = address;
    }
    if let Some(proto) = header("x-forwarded-proto") {
        forwarded.https = proto.trim().eq_ignore_ascii_case("https");
    }
    forwarded
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn ranges_hold_what_their_prefix_covers() {
        let range = Range::parse("10.1.0.0/16").unwrap();
        assert!(range.contains("10.1.200.3".parse().unwrap()));
        assert!(!range.contains("10.2.0.1".parse().unwrap()));
        assert!(
            Range::parse("::1")
                .unwrap()
                .contains("::1".parse().unwrap())
        );
        assert!(Range::parse("10.0.0.0/33").is_err());
        assert!(Range::parse("proxy").is_err());
    }

    #[test]
    fn only_a_trusted_proxy_is_believed() {
        let forwarded = headers(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
        ]);
        let trusted = vec![Range::parse("127.0.0.1").unwrap()];
        let via_proxy = origin("127.0.0.1".parse().unwrap(), &forwarded, &trusted, false);
        assert_eq!(via_proxy.address, "203.0.113.9".parse::<IpAddr>().unwrap());
        assert!(via_proxy.https);
        let direct = origin("198.51.100.4".parse().unwrap(), &forwarded, &trusted, false);
        assert_eq!(direct.address, "198.51.100.4".parse::<IpAddr>().unwrap());
        assert!(!direct.https);
    }

    #[test]
    fn the_forwarded_header_is_read() {
        let forwarded = headers(&[(
            "forwarded",
            "for=192.0.2.1, for=\"[2001:db8::1]:443\";proto=https",
        )]);
        let trusted = vec![Range::parse("10.0.0.0/8").unwrap()];
        let seen = origin("10.0.0.2".parse().unwrap(), &forwarded, &trusted, false);
        assert_eq!(seen.address, "2001:db8::1".parse::<IpAddr>().unwrap());
        assert!(seen.https);
    }
}

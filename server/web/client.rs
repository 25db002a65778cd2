//! The client's address: the socket peer, or — only when the peer is a configured trusted proxy —
//! the right-most address in `X-Forwarded-For` that is not itself a trusted proxy (the left part of
//! that header is whatever the client chose to send).

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

pub fn address(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer_ip = peer.ip().to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer_ip) {
        return peer_ip;
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .collect();
    forwarded.into_iter().rev().find(|ip| !is_trusted(ip)).unwrap_or(peer_ip)
}

/// The scheme the browser used to reach nsplay, when a trusted proxy says so
/// (`X-Forwarded-Proto`, lower case); `None` when nothing trustworthy says it (nsplay itself
/// serves plain HTTP, but an unlisted proxy in front may have ended TLS).
pub fn forwarded_proto(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> Option<String> {
    let peer = peer.ip().to_canonical();
    if !trusted.iter().any(|n| n.contains(&peer)) {
        return None;
    }
    let proto = headers.get("x-forwarded-proto")?.to_str().ok()?.split(',').next()?.trim().to_ascii_lowercase();
    (!proto.is_empty()).then_some(proto)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert("x-forwarded-for", v.parse().unwrap());
        m
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let proxy: SocketAddr = "10.0.0.5:4000".parse().unwrap();
        let stranger: SocketAddr = "203.0.113.9:4000".parse().unwrap();
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(address(proxy, &h("198.51.100.7"), &trusted), "198.51.100.7".parse::<IpAddr>().unwrap());
        assert_eq!(address(stranger, &h("198.51.100.7"), &trusted), "203.0.113.9".parse::<IpAddr>().unwrap());
        // A client cannot hide behind a spoofed left-most entry.
        assert_eq!(
            address(proxy, &h("1.2.3.4, 198.51.100.7, 10.0.0.6"), &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(address(proxy, &HeaderMap::new(), &trusted), "10.0.0.5".parse::<IpAddr>().unwrap());
        assert_eq!(address(proxy, &h("198.51.100.7"), &[]), "10.0.0.5".parse::<IpAddr>().unwrap());
    }
}

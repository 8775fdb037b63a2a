//! What the route-safety rule (`plan::routes`) needs from this host: its
//! own addresses and default gateways (read from /proc) and this node's
//! public endpoint as given (`install --endpoint`, `WGP2P_ENDPOINT`; never
//! discovered over the network for a check).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::announce;
use crate::config::node::Node;
use crate::context::Context;
use crate::error::Result;
use crate::plan::Own;
use crate::types::Endpoint;

/// This node as the rules need it, with the addresses no route may cover.
pub fn own(ctx: &Context, node: &Node) -> Result<Own> {
    let mut own = Own::of(node)?;
    own.host = protected_addresses();
    if let Some(endpoint) = public_endpoint(ctx, node)?
        && let Some(ip) = endpoint.ip()
    {
        own.host
            .push((ip, "this node's public endpoint".to_string()));
    }
    Ok(own)
}

/// This node's public endpoint when one is given (saved by `install
/// --endpoint` or in `WGP2P_ENDPOINT`), with the listen port by default.
pub fn public_endpoint(ctx: &Context, node: &Node) -> Result<Option<Endpoint>> {
    let port = announce::listen_port_of(node);
    Ok(announce::given_endpoint(ctx, node)?.map(|e| e.with_default_port(port)))
}

/// This host's own addresses and default gateways, which no route may
/// cover: read from /proc (an unreadable file gives nothing).
fn protected_addresses() -> Vec<(IpAddr, String)> {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let mut out: Vec<(IpAddr, String)> = Vec::new();
    let mut local = local_v4(&read("/proc/net/fib_trie"));
    local.extend(local_v6(&read("/proc/net/if_inet6")));
    local.sort_unstable();
    local.dedup();
    out.extend(
        local
            .into_iter()
            .map(|ip| (ip, "an address of this host".to_string())),
    );
    let gateways = gateways_v4(&read("/proc/net/route"))
        .into_iter()
        .chain(gateways_v6(&read("/proc/net/ipv6_route")));
    out.extend(gateways.map(|ip| (ip, "this host's default gateway".to_string())));
    out
}

/// Local IPv4 addresses from `/proc/net/fib_trie` (`|-- IP` then `/32 host LOCAL`).
fn local_v4(fib_trie: &str) -> Vec<IpAddr> {
    let mut last: Option<Ipv4Addr> = None;
    let mut out = Vec::new();
    for line in fib_trie.lines() {
        let line = line.trim();
        if let Some(ip) = line.strip_prefix("|-- ") {
            last = ip.parse().ok();
        } else if line == "/32 host LOCAL"
            && let Some(ip) = last
            && !ip.is_loopback()
        {
            out.push(IpAddr::V4(ip));
        }
    }
    out
}

fn hex_v6(text: &str) -> Option<Ipv6Addr> {
    (text.len() == 32)
        .then(|| u128::from_str_radix(text, 16).ok())
        .flatten()
        .map(Ipv6Addr::from)
}

/// Global IPv6 addresses from `/proc/net/if_inet6` (scope 00).
fn local_v6(if_inet6: &str) -> Vec<IpAddr> {
    if_inet6
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let ip = hex_v6(fields.first()?)?;
            (fields.get(3) == Some(&"00")).then_some(IpAddr::V6(ip))
        })
        .collect()
}

/// Gateways of IPv4 default routes from /proc/net/route (little-endian hex).
fn gateways_v4(route: &str) -> Vec<IpAddr> {
    route
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (dest, gateway, mask) = (fields.get(1)?, fields.get(2)?, fields.get(7)?);
            if *dest != "00000000" || *mask != "00000000" {
                return None;
            }
            let value = u32::from_str_radix(gateway, 16).ok()?;
            let ip = Ipv4Addr::from(value.to_le_bytes());
            (!ip.is_unspecified()).then_some(IpAddr::V4(ip))
        })
        .collect()
}

/// Next hops of IPv6 default routes from `/proc/net/ipv6_route`.
fn gateways_v6(route: &str) -> Vec<IpAddr> {
    route
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let dest = hex_v6(fields.first()?)?;
            let next_hop = hex_v6(fields.get(4)?)?;
            (dest.is_unspecified() && *fields.get(1)? == "00" && !next_hop.is_unspecified())
                .then_some(IpAddr::V6(next_hop))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_local_addresses_and_gateways() {
        let fib = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n     |-- 127.0.0.1\n        /32 host LOCAL\n     |-- 203.0.113.5\n        /32 host LOCAL\n     |-- 203.0.113.255\n        /32 link BROADCAST\n";
        assert_eq!(local_v4(fib), ["203.0.113.5".parse::<IpAddr>().unwrap()]);
        let inet6 = "20010db8000000000000000000000005 02 40 00 80 eth0\nfe800000000000000000000000000001 02 40 20 80 eth0\n";
        assert_eq!(local_v6(inet6), ["2001:db8::5".parse::<IpAddr>().unwrap()]);
        let route = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\neth0\t00000000\t0171A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\neth0\t0071A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(
            gateways_v4(route),
            ["192.168.113.1".parse::<IpAddr>().unwrap()]
        );
        let route6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth0\n";
        assert_eq!(gateways_v6(route6), ["fe80::1".parse::<IpAddr>().unwrap()]);
    }
}

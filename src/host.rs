//! Facts of this host: its addresses (one source, getifaddrs through
//! `sys`), and what the route-safety rule (`plan::routes`) needs: those
//! addresses, the default gateways (from /proc) and this node's public
//! endpoint as given (`install --endpoint`, `WGP2P_ENDPOINT`; never
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
    let port = announce::effective_port(ctx, node);
    Ok(announce::given_endpoint(ctx, node)?.map(|e| e.with_default_port(port)))
}

/// This host's addresses, sorted: every interface but `exclude` (the
/// WireGuard interface itself; `""` excludes none), without loopback and
/// IPv6 link-local addresses, which no peer ever sees.
pub fn addresses(exclude: &str) -> Vec<IpAddr> {
    let mut found: Vec<IpAddr> = crate::sys::interface_addresses()
        .into_iter()
        .filter(|(name, _)| name != exclude)
        .map(|(_, ip)| ip)
        .filter(|ip| !ip.is_loopback() && !is_link_local_v6(ip))
        .collect();
    found.sort_unstable();
    found.dedup();
    found
}

fn is_link_local_v6(ip: &IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)
}

/// This host's own addresses and default gateways, which no route may
/// cover (an unreadable /proc file gives no gateways).
fn protected_addresses() -> Vec<(IpAddr, String)> {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let mut out: Vec<(IpAddr, String)> = addresses("")
        .into_iter()
        .map(|ip| (ip, "an address of this host".to_string()))
        .collect();
    let gateways = gateways_v4(&read("/proc/net/route"))
        .into_iter()
        .chain(gateways_v6(&read("/proc/net/ipv6_route")));
    out.extend(gateways.map(|ip| (ip, "this host's default gateway".to_string())));
    out
}

fn hex_v6(text: &str) -> Option<Ipv6Addr> {
    (text.len() == 32)
        .then(|| u128::from_str_radix(text, 16).ok())
        .flatten()
        .map(Ipv6Addr::from)
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
    fn addresses_leave_out_loopback_and_the_excluded_interface() {
        let all = addresses("");
        assert!(all.iter().all(|ip| !ip.is_loopback()), "{all:?}");
        assert!(all.windows(2).all(|w| w[0] < w[1]), "{all:?}");
        assert!(!is_link_local_v6(&"fd00::1".parse().unwrap()));
        assert!(is_link_local_v6(&"fe80::1".parse().unwrap()));
    }

    #[test]
    fn reads_gateways() {
        let route = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\neth0\t00000000\t0171A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\neth0\t0071A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(
            gateways_v4(route),
            ["192.168.113.1".parse::<IpAddr>().unwrap()]
        );
        let route6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth0\n";
        assert_eq!(gateways_v6(route6), ["fe80::1".parse::<IpAddr>().unwrap()]);
    }
}

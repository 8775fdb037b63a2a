//! The kernel's routes through rtnetlink, synchronously.
//!
//! `netlink-packet-route` builds and parses the messages and
//! `netlink-request` sends one request on a blocking socket and collects
//! the answer: both are already in the build as dependencies of
//! `wireguard-control` (its kernel backend), so routes cost no new crate
//! and no async runtime (rtnetlink would bring tokio for one request at a
//! time). A route is added as `ip route add NET dev IFACE [table N]` adds
//! it: protocol boot, scope link (IPv4) or universe (IPv6), unicast, no
//! metric (the kernel's default), the table in the header when below 256
//! and in `RTA_TABLE` always.

use std::io;
use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleFlags, RuleHeader, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_request::netlink_request_rtnl;

use super::{Changes, MAIN, Route, Rule, Snapshot};
use crate::error::{Error, Result};
use crate::types::InterfaceName;

/// The interface's index, or `None` when it does not exist.
pub fn ifindex(iface: &InterfaceName) -> Option<u32> {
    crate::sys::interface_index(iface.as_str()).ok()
}

/// One route of a dump, as far as wgp2p looks at it.
struct Seen {
    table: u32,
    net: IpNet,
    protocol: RouteProtocol,
    kind: RouteType,
    oif: Option<u32>,
    multipath: bool,
    priority: u32,
    tos: u8,
    source_len: u8,
}

fn seen(message: &RouteMessage) -> Option<Seen> {
    let h = &message.header;
    let mut table = u32::from(h.table);
    let mut dst: Option<IpAddr> = None;
    let mut oif = None;
    let mut multipath = false;
    let mut priority = 0;
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(RouteAddress::Inet(a)) => dst = Some((*a).into()),
            RouteAttribute::Destination(RouteAddress::Inet6(a)) => dst = Some((*a).into()),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::MultiPath(_) => multipath = true,
            RouteAttribute::Priority(p) => priority = *p,
            _ => {}
        }
    }
    let dst = match (dst, h.address_family) {
        (Some(a), _) => a,
        (None, AddressFamily::Inet) => IpAddr::from([0u8; 4]),
        (None, AddressFamily::Inet6) => IpAddr::from([0u16; 8]),
        (None, _) => return None,
    };
    Some(Seen {
        table,
        net: IpNet::new(dst, h.destination_prefix_length).ok()?,
        protocol: h.protocol,
        kind: h.kind,
        oif,
        multipath,
        priority,
        tos: h.tos,
        source_len: h.source_prefix_length,
    })
}

fn dump(family: AddressFamily) -> io::Result<Vec<RouteMessage>> {
    let mut request = RouteMessage::default();
    request.header.address_family = family;
    let answers = netlink_request_rtnl(
        RouteNetlinkMessage::GetRoute(request),
        Some(NLM_F_REQUEST | NLM_F_DUMP),
    )?;
    Ok(answers
        .into_iter()
        .filter_map(|m| match m.payload {
            netlink_packet_core::NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)) => {
                Some(r)
            }
            _ => None,
        })
        .collect())
}

/// The default metric the kernel gives a route added without one.
fn default_priority(net: &IpNet) -> u32 {
    if net.addr().is_ipv4() { 0 } else { 1024 }
}

fn dump_rules(family: AddressFamily) -> io::Result<Vec<RuleMessage>> {
    let mut request = RuleMessage::default();
    request.header.family = family;
    let answers = netlink_request_rtnl(
        RouteNetlinkMessage::GetRule(request),
        Some(NLM_F_REQUEST | NLM_F_DUMP),
    )?;
    Ok(answers
        .into_iter()
        .filter_map(|m| match m.payload {
            netlink_packet_core::NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRule(r)) => {
                Some(r)
            }
            _ => None,
        })
        .collect())
}

/// A rule of one of wg-quick's two shapes, else `None`.
fn rule_of(message: &RuleMessage, v6: bool) -> Option<Rule> {
    let h = &message.header;
    if h.action != RuleAction::ToTable || h.dst_len != 0 || h.src_len != 0 || h.tos != 0 {
        return None;
    }
    let mut table = u32::from(h.table);
    let (mut fwmark, mut mask, mut suppress) = (None, None, None);
    for attribute in &message.attributes {
        match attribute {
            RuleAttribute::Table(t) => table = *t,
            RuleAttribute::FwMark(m) => fwmark = Some(*m),
            RuleAttribute::FwMask(m) => mask = Some(*m),
            // The kernel sends both always, all ones meaning unset.
            RuleAttribute::SuppressPrefixLen(p) => suppress = (*p != u32::MAX).then_some(*p),
            RuleAttribute::SuppressIfGroup(g) if *g == u32::MAX => {}
            RuleAttribute::Priority(_) | RuleAttribute::Protocol(_) => {}
            // Any other selector (iif, uid, ports…) is not wg-quick's.
            _ => return None,
        }
    }
    let invert = h.flags.contains(RuleFlags::Invert);
    match (fwmark, suppress) {
        (Some(mark), None) if invert && mark == table && mask.is_none_or(|m| m == u32::MAX) => {
            Some(Rule::NotFwmark { v6, table })
        }
        (None, Some(0)) if !invert && table == MAIN => Some(Rule::SuppressMain { v6 }),
        _ => None,
    }
}

fn rule_message(rule: Rule) -> RuleMessage {
    let (v6, table) = match rule {
        Rule::NotFwmark { v6, table } => (v6, table),
        Rule::SuppressMain { v6 } => (v6, MAIN),
    };
    let mut m = RuleMessage::default();
    m.header = RuleHeader {
        family: if v6 {
            AddressFamily::Inet6
        } else {
            AddressFamily::Inet
        },
        table: u8::try_from(table).unwrap_or(0),
        action: RuleAction::ToTable,
        ..RuleHeader::default()
    };
    if table > 255 {
        m.header.table = 0;
    }
    m.attributes.push(RuleAttribute::Table(table));
    match rule {
        Rule::NotFwmark { table, .. } => {
            m.header.flags = RuleFlags::Invert;
            m.attributes.push(RuleAttribute::FwMark(table));
        }
        Rule::SuppressMain { .. } => m.attributes.push(RuleAttribute::SuppressPrefixLen(0)),
    }
    m
}

/// The routes into `iface` the kernel holds, or `None` when it does not
/// exist.
pub fn snapshot(iface: &InterfaceName) -> Result<Option<Snapshot>> {
    let Some(index) = ifindex(iface) else {
        return Ok(None);
    };
    let mut out = Snapshot::default();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let routes = dump(family)
            .map_err(|e| Error::System(format!("reading the routes of {iface} (netlink): {e}")))?;
        let rules = dump_rules(family)
            .map_err(|e| Error::System(format!("reading the routing rules (netlink): {e}")))?;
        let v6 = family == AddressFamily::Inet6;
        out.rules
            .extend(rules.iter().filter_map(|r| rule_of(r, v6)));
        for route in routes.iter().filter_map(seen) {
            out.tables.insert(route.table);
            if route.kind != RouteType::Unicast || route.tos != 0 || route.source_len != 0 {
                continue;
            }
            let ours = route.oif == Some(index) && !route.multipath;
            if ours && route.protocol == RouteProtocol::Kernel && route.table == MAIN {
                out.covering.push(route.net);
            } else if ours && route.protocol == RouteProtocol::Boot {
                if route.priority == default_priority(&route.net) {
                    out.present.insert(Route {
                        table: route.table,
                        net: route.net,
                    });
                }
            } else if !ours && route.priority == default_priority(&route.net) {
                let through = route
                    .oif
                    .and_then(name_of)
                    .unwrap_or_else(|| "another route".to_string());
                out.taken.push((
                    Route {
                        table: route.table,
                        net: route.net,
                    },
                    through,
                ));
            }
        }
    }
    Ok(Some(out))
}

fn name_of(index: u32) -> Option<String> {
    crate::sys::interface_name(index)
}

fn message(route: &Route, index: u32) -> RouteMessage {
    let v4 = route.net.addr().is_ipv4();
    let mut header = RouteHeader {
        address_family: if v4 {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        },
        destination_prefix_length: route.net.prefix_len(),
        table: u8::try_from(route.table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC),
        protocol: RouteProtocol::Boot,
        scope: if v4 {
            RouteScope::Link
        } else {
            RouteScope::Universe
        },
        kind: RouteType::Unicast,
        ..RouteHeader::default()
    };
    if route.table > 255 {
        header.table = RouteHeader::RT_TABLE_UNSPEC;
    }
    let mut attributes = vec![
        RouteAttribute::Table(route.table),
        RouteAttribute::Oif(index),
    ];
    if route.net.prefix_len() > 0 {
        attributes.insert(
            0,
            RouteAttribute::Destination(RouteAddress::from(route.net.network())),
        );
    }
    let mut m = RouteMessage::default();
    m.header = header;
    m.attributes = attributes;
    m
}

/// Rules and routes, in the order that never sends WireGuard's own
/// packets into the tunnel: rules deleted before their default route,
/// routes added before the rules that lead to them (the fwmark, set by
/// the caller, comes before both). The first failure stops and is
/// returned with the command that failed.
pub fn apply(iface: &InterfaceName, changes: &Changes) -> Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let index = ifindex(iface).ok_or_else(|| {
        Error::System(format!(
            "interface {iface} went down during the change: expected it up"
        ))
    })?;
    for rule in &changes.delete_rules {
        match netlink_request_rtnl(
            RouteNetlinkMessage::DelRule(rule_message(*rule)),
            Some(NLM_F_REQUEST | NLM_F_ACK),
        ) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(failed(&rule.del_command(), &e)),
        }
    }
    for route in &changes.delete {
        match netlink_request_rtnl(
            RouteNetlinkMessage::DelRoute(message(route, index)),
            Some(NLM_F_REQUEST | NLM_F_ACK),
        ) {
            Ok(_) => {}
            // Gone already: what was wanted.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            Err(e) => return Err(failed(&route.del_command(iface), &e)),
        }
    }
    for route in &changes.add {
        match netlink_request_rtnl(
            RouteNetlinkMessage::NewRoute(message(route, index)),
            Some(NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL),
        ) {
            Ok(_) => {}
            Err(e) => return Err(failed(&route.add_command(iface), &e)),
        }
    }
    if changes
        .add_rules
        .iter()
        .any(|r| matches!(r, Rule::NotFwmark { v6: false, .. }))
    {
        // wg-quick's `sysctl -q net.ipv4.conf.all.src_valid_mark=1`.
        let path = "/proc/sys/net/ipv4/conf/all/src_valid_mark";
        std::fs::write(path, "1")
            .map_err(|e| Error::System(format!("cannot set {path} to 1: {e}")))?;
    }
    for rule in &changes.add_rules {
        if let Err(e) = netlink_request_rtnl(
            RouteNetlinkMessage::NewRule(rule_message(*rule)),
            Some(NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL),
        ) {
            return Err(failed(&rule.add_command(), &e));
        }
    }
    Ok(())
}

fn failed(command: &str, e: &io::Error) -> Error {
    Error::System(format!("`{command}` failed (netlink): {e}"))
}

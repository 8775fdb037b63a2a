//! Routes as `wg-quick up` makes them, kept equal live.
//!
//! wg-quick (linux.bash, `add_route`) routes every network of every peer's
//! AllowedIPs, as wg holds them (masked, each once), sorted from the
//! narrowest prefix to the widest:
//!
//! - `Table = off`: no route;
//! - `Table = N` (a number): `ip route add NET dev IFACE table N`, for
//!   every network, default routes included;
//! - `Table = auto` or none: a default route (`/0`) through its own table
//!   and fwmark rules ([`Wanted::default`], `add_default`); any other
//!   network `ip route add NET dev IFACE`, unless
//!   `ip route show dev IFACE match NET` already lists a route of the
//!   main table that covers it (the prefix route of the interface's
//!   `Address`, made by the kernel, covers the peers inside the VPN
//!   network). Routes added before are narrower, so they never cover a
//!   later one: only the kernel's routes decide.
//!
//! This module is pure: [`Spec`] reads what wg-quick reads from a config,
//! [`wanted`] says what it would route, [`Changes`] is the difference
//! with what the kernel holds. The kernel side (netlink) is
//! [`netlink`]; the device seam exposes it (`Device::routes`,
//! `Device::apply_routes`), and `commit` applies the difference of a change
//! in the same transaction as the file and the peers.
//!
//! A route wgp2p adds is the one `ip route add NET dev IFACE` makes
//! (protocol `boot`, scope link for IPv4, the kernel's default metric), so
//! `ip route` shows the same before and after `wg-quick down; up`.

pub mod netlink;

use std::collections::BTreeSet;
use std::fmt;

use ipnet::IpNet;

use crate::config::document::{Document, keys, wg_key_eq};
use crate::config::node::peers_as_wg;
use crate::error::Result;
use crate::types::InterfaceName;

/// The main routing table.
pub const MAIN: u32 = 254;

/// What `Table =` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Table {
    /// No routes at all.
    Off,
    /// The main table, default routes through their own table.
    Auto,
    /// Every network into this table, no coverage check, no fwmark.
    Id(u32),
    /// A table name wg-quick would hand to ip(8) (`/etc/iproute2/rt_tables`):
    /// wgp2p does not manage these routes live and says so.
    Named(String),
}

impl Table {
    fn parse(value: &str) -> Table {
        match value {
            "" | "auto" => Table::Auto,
            "off" => Table::Off,
            "main" => Table::Id(MAIN),
            "local" => Table::Id(255),
            "default" => Table::Id(253),
            _ => match value.parse::<u32>() {
                Ok(n) => Table::Id(n),
                Err(_) => Table::Named(value.to_string()),
            },
        }
    }
}

/// What wg-quick reads from a config to make routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    pub table: Table,
    /// `FwMark` as wg reads it (`off` and 0 are none).
    pub fwmark: Option<u32>,
    /// Every network of every peer, masked, each once, in wg's order.
    pub nets: Vec<IpNet>,
}

/// The last value of `key` over every `[Interface]` section: what
/// wg-quick and wg keep when a key repeats.
fn interface_value<'a>(doc: &'a Document, key: &str) -> Option<&'a str> {
    doc.sections()
        .filter(|s| s.is_interface())
        .filter_map(|s| {
            s.key_values()
                .filter(|(k, _, _)| wg_key_eq(k, key))
                .last()
                .map(|(_, v, _)| v)
        })
        .last()
        .map(str::trim)
}

/// wg's reading of `FwMark`: `off`, decimal, or `0x` hex.
fn parse_fwmark(value: &str) -> Option<u32> {
    let mark = if value == "off" {
        0
    } else if let Some(hex) = value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
    {
        u32::from_str_radix(hex, 16).ok()?
    } else {
        value.parse().ok()?
    };
    (mark != 0).then_some(mark)
}

impl Spec {
    /// What `wg-quick up` of `doc` routes (the file must be one wg reads:
    /// the peers are read as wg holds them).
    pub fn of(doc: &Document) -> Result<Spec> {
        let table = interface_value(doc, "Table").map_or(Table::Auto, Table::parse);
        let fwmark = interface_value(doc, keys::FW_MARK).and_then(parse_fwmark);
        let mut seen = BTreeSet::new();
        let mut nets = Vec::new();
        for peer in peers_as_wg(doc)? {
            for net in &peer.allowed_ips {
                let net = net.trunc();
                if seen.insert(net) {
                    nets.push(net);
                }
            }
        }
        Ok(Spec {
            table,
            fwmark,
            nets,
        })
    }
}

/// A route into the interface: its network and table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    pub table: u32,
    pub net: IpNet,
}

impl Route {
    /// The ip(8) arguments after `ip -4|-6 route add|del`.
    pub fn ip_args(&self, iface: &InterfaceName) -> String {
        if self.table == MAIN {
            format!("{} dev {iface}", self.net)
        } else {
            format!("{} dev {iface} table {}", self.net, self.table)
        }
    }

    fn family(&self) -> &'static str {
        if self.net.addr().is_ipv4() {
            "-4"
        } else {
            "-6"
        }
    }

    /// The command that adds it, as wg-quick runs it.
    pub fn add_command(&self, iface: &InterfaceName) -> String {
        format!("ip {} route add {}", self.family(), self.ip_args(iface))
    }

    /// The command that deletes it.
    pub fn del_command(&self, iface: &InterfaceName) -> String {
        format!("ip {} route del {}", self.family(), self.ip_args(iface))
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.table == MAIN {
            write!(f, "{}", self.net)
        } else {
            write!(f, "{} (table {})", self.net, self.table)
        }
    }
}

/// What wg-quick would route for a config.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    /// The `dev IFACE` routes.
    pub routes: BTreeSet<Route>,
    /// The default routes (`/0`) of `Table = auto`, which go through a
    /// table of their own and fwmark rules; not applied live (see
    /// docs/behaviour.md, "Live, no restart").
    pub default: Vec<IpNet>,
    /// `Table = NAME`: routes not managed live.
    pub unmanaged: Option<String>,
}

/// What wg-quick would route for `spec`, on an interface whose main table
/// holds `covering` (the kernel's routes into it, e.g. the `Address`
/// prefix routes).
pub fn wanted(spec: &Spec, covering: &[IpNet]) -> Wanted {
    let mut out = Wanted::default();
    match &spec.table {
        Table::Off => {}
        Table::Named(name) => out.unmanaged = Some(name.clone()),
        Table::Id(table) => {
            out.routes = spec
                .nets
                .iter()
                .map(|&net| Route { table: *table, net })
                .collect();
        }
        Table::Auto => {
            for &net in &spec.nets {
                if net.prefix_len() == 0 {
                    out.default.push(net);
                } else if !covering.iter().any(|c| c.contains(&net)) {
                    out.routes.insert(Route { table: MAIN, net });
                }
            }
        }
    }
    out
}

/// The routes into an interface the kernel holds now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Routes the kernel made (`proto kernel`) in the main table: they
    /// cover networks as at `wg-quick up`.
    pub covering: Vec<IpNet>,
    /// Routes as `ip route add NET dev IFACE` makes them (`proto boot`,
    /// unicast, through this interface alone), in any table.
    pub present: BTreeSet<Route>,
    /// Routes through other interfaces with the same table, network and
    /// default metric as a route this one could add: adding it would fail
    /// with "File exists".
    pub taken: Vec<(Route, String)>,
}

/// The difference to apply: delete first, then add.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub delete: Vec<Route>,
    pub add: Vec<Route>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.delete.is_empty() && self.add.is_empty()
    }

    /// A change of config from `old` to `new`: the routes `old` wanted and
    /// `new` does not go (when present), every route `new` wants and the
    /// kernel lacks comes. Routes nobody asked for (added by hand or by a
    /// `PostUp`) stay: `repair` reports them ([`Changes::repair`]).
    pub fn between(old: &Wanted, new: &Wanted, now: &Snapshot) -> Changes {
        Changes {
            delete: old
                .routes
                .difference(&new.routes)
                .filter(|r| now.present.contains(r))
                .copied()
                .collect(),
            add: new.routes.difference(&now.present).copied().collect(),
        }
    }

    /// Everything that differs from what `wanted` routes: missing routes
    /// come, routes into the interface nobody asked for go.
    pub fn repair(wanted: &Wanted, now: &Snapshot) -> Changes {
        Changes {
            delete: now.present.difference(&wanted.routes).copied().collect(),
            add: wanted.routes.difference(&now.present).copied().collect(),
        }
    }

    /// The first route to add that another interface holds already.
    pub fn blocked<'a>(&self, now: &'a Snapshot) -> Option<&'a (Route, String)> {
        now.taken.iter().find(|(r, _)| self.add.contains(r))
    }
}

/// How the routes into `iface` differ from what `wg-quick up` of `doc`
/// makes: the changes that repair it and one line per route, each with
/// the ip(8) command that fixes it by hand. Routes nobody asked for count
/// only when the config has no `PreUp`/`PostUp` hook (a hook may add
/// routes of its own). Empty when `doc` is not a file wg reads (status
/// says why) or its table is a name (`Table = NAME`, not managed live).
pub fn drift(doc: &Document, now: &Snapshot, iface: &InterfaceName) -> (Changes, Vec<String>) {
    let Ok(spec) = Spec::of(doc) else {
        return (Changes::default(), Vec::new());
    };
    let wanted = wanted(&spec, &now.covering);
    if wanted.unmanaged.is_some() {
        return (Changes::default(), Vec::new());
    }
    let hooks = doc.sections().filter(|s| s.is_interface()).any(|s| {
        s.key_values()
            .any(|(k, _, _)| wg_key_eq(k, "PreUp") || wg_key_eq(k, keys::POST_UP))
    });
    let mut changes = Changes::repair(&wanted, now);
    if hooks {
        changes.delete.clear();
    }
    let mut lines: Vec<String> = changes
        .add
        .iter()
        .map(|r| {
            format!(
                "route {r} into {iface} is missing (wg-quick up makes it): `{}`",
                r.add_command(iface)
            )
        })
        .collect();
    lines.extend(changes.delete.iter().map(|r| {
        format!(
            "route {r} into {iface} is not asked for by the config (wg-quick up would not make it): `{}`",
            r.del_command(iface)
        )
    }));
    (changes, lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "DD5yKRfzExcV5+kDnTroDgCU15latdMjiQ59j1hEuk8=";
    const KEY_B: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";

    fn spec(text: &str) -> Spec {
        Spec::of(&Document::parse(text).unwrap()).unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn routes(w: &Wanted) -> Vec<String> {
        w.routes.iter().map(ToString::to_string).collect()
    }

    fn conf(interface: &str, a: &str, b: &str) -> String {
        format!(
            "[Interface]\nAddress = 10.15.0.1/24\n{interface}\n[Peer]\nPublicKey = {KEY_A}\nAllowedIPs = {a}\n[Peer]\nPublicKey = {KEY_B}\nAllowedIPs = {b}\n"
        )
    }

    #[test]
    fn auto_routes_what_the_address_route_does_not_cover() {
        let s = spec(&conf(
            "",
            "10.15.0.2/32, 192.168.77.9/24",
            "10.15.0.3/32, fd00:7::/64, 0.0.0.0/0",
        ));
        assert_eq!(
            s.nets,
            nets(&[
                "10.15.0.2/32",
                "192.168.77.0/24",
                "10.15.0.3/32",
                "fd00:7::/64",
                "0.0.0.0/0"
            ])
        );
        let w = wanted(&s, &nets(&["10.15.0.0/24"]));
        assert_eq!(routes(&w), ["192.168.77.0/24", "fd00:7::/64"]);
        assert_eq!(w.default, nets(&["0.0.0.0/0"]));
        // Without the prefix route (Address = 10.15.0.1/32) every host route.
        let w = wanted(&s, &[]);
        assert_eq!(routes(&w).len(), 4);
    }

    #[test]
    fn a_numbered_table_takes_every_network_and_off_none() {
        let s = spec(&conf("Table = 1234", "10.15.0.2/32", "0.0.0.0/0"));
        let w = wanted(&s, &nets(&["10.15.0.0/24"]));
        assert_eq!(
            routes(&w),
            ["0.0.0.0/0 (table 1234)", "10.15.0.2/32 (table 1234)"]
        );
        assert!(w.default.is_empty());
        let s = spec(&conf("Table = off", "10.15.0.2/32", "192.168.1.0/24"));
        assert_eq!(wanted(&s, &[]), Wanted::default());
        let s = spec(&conf("Table = vpn", "10.15.0.2/32", "192.168.1.0/24"));
        assert_eq!(wanted(&s, &[]).unmanaged.as_deref(), Some("vpn"));
        // The last Table of the last [Interface] wins, as in wg-quick.
        let text = format!(
            "{}[Interface]\nTable = 7\n",
            conf("Table = off", "10.9.0.0/16", "10.8.0.1/32")
        );
        assert_eq!(spec(&text).table, Table::Id(7));
    }

    #[test]
    fn networks_are_read_as_wg_holds_them() {
        // One network in two peers is one route; a key in two sections
        // keeps the later section's networks.
        let text = format!(
            "[Interface]\nFwMark = 0x10\n[Peer]\nPublicKey = {KEY_A}\nAllowedIPs = 10.9.0.0/16\n[Peer]\nPublicKey = {KEY_B}\nAllowedIPs = 10.9.0.7/16\n[Peer]\nPublicKey = {KEY_A}\nAllowedIPs = 10.8.0.1/32\n"
        );
        let s = spec(&text);
        assert_eq!(s.nets, nets(&["10.8.0.1/32", "10.9.0.0/16"]));
        assert_eq!(s.fwmark, Some(16));
        assert_eq!(parse_fwmark("off"), None);
        assert_eq!(parse_fwmark("0"), None);
        assert_eq!(parse_fwmark("51820"), Some(51820));
    }

    #[test]
    fn changes_touch_only_what_the_change_moves() {
        let iface: InterfaceName = "wg0".parse().unwrap();
        let route = |n: &str| Route {
            table: MAIN,
            net: n.parse().unwrap(),
        };
        let old = Wanted {
            routes: [route("192.168.77.0/24"), route("192.168.78.0/24")].into(),
            ..Wanted::default()
        };
        let new = Wanted {
            routes: [route("192.168.78.0/24"), route("192.168.79.0/24")].into(),
            ..Wanted::default()
        };
        // A hand-made route (192.168.5.0/24) stays; 78 is missing: it comes.
        let now = Snapshot {
            present: [route("192.168.77.0/24"), route("192.168.5.0/24")].into(),
            ..Snapshot::default()
        };
        let c = Changes::between(&old, &new, &now);
        assert_eq!(c.delete, [route("192.168.77.0/24")]);
        assert_eq!(c.add, [route("192.168.78.0/24"), route("192.168.79.0/24")]);
        let r = Changes::repair(&new, &now);
        assert_eq!(
            r.delete,
            [route("192.168.5.0/24"), route("192.168.77.0/24")]
        );
        assert_eq!(
            r.delete[0].del_command(&iface),
            "ip -4 route del 192.168.5.0/24 dev wg0"
        );
        let t = Route {
            table: 7,
            net: "fd00::/64".parse().unwrap(),
        };
        assert_eq!(
            t.add_command(&iface),
            "ip -6 route add fd00::/64 dev wg0 table 7"
        );
        let taken = Snapshot {
            taken: vec![(route("192.168.79.0/24"), "eth0".into())],
            ..now
        };
        assert_eq!(c.blocked(&taken).map(|(_, d)| d.as_str()), Some("eth0"));
    }
}

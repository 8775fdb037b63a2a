//! Routes as `wg-quick up` makes them, kept equal live.
//!
//! wg-quick (linux.bash, `add_route`) routes every network of every peer's
//! AllowedIPs, as wg holds them (masked, each once), sorted from the
//! narrowest prefix to the widest:
//!
//! - `Table = off`: no route;
//! - `Table = N` (a number): `ip route add NET dev IFACE table N`, for
//!   every network, default routes included;
//! - `Table = auto` or none: a default route (`/0`) `dev IFACE table T`
//!   where T is the interface's fwmark (`FwMark`, or the first free table
//!   from 51820, then set as the fwmark), with the rules
//!   `not fwmark T table T` and `table main suppress_prefixlength 0` of
//!   its family (`add_default`); any other
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

/// The table wg-quick takes for default routes when no fwmark is set
/// (the first of 51820, 51821, … with no route in it).
pub const FIRST_DEFAULT_TABLE: u32 = 51820;

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

/// A policy rule of wg-quick's default routes, in one family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    /// `not fwmark T table T`.
    NotFwmark { v6: bool, table: u32 },
    /// `table main suppress_prefixlength 0`.
    SuppressMain { v6: bool },
}

impl Rule {
    fn family(self) -> &'static str {
        match self {
            Rule::NotFwmark { v6, .. } | Rule::SuppressMain { v6 } => {
                if v6 {
                    "-6"
                } else {
                    "-4"
                }
            }
        }
    }

    /// The command that adds it, as wg-quick runs it.
    pub fn add_command(self) -> String {
        match self {
            Rule::NotFwmark { table, .. } => {
                format!(
                    "ip {} rule add not fwmark {table} table {table}",
                    self.family()
                )
            }
            Rule::SuppressMain { .. } => format!(
                "ip {} rule add table main suppress_prefixlength 0",
                self.family()
            ),
        }
    }

    /// The command that deletes it, as wg-quick runs it.
    pub fn del_command(self) -> String {
        match self {
            Rule::NotFwmark { table, .. } => {
                format!("ip {} rule delete table {table}", self.family())
            }
            Rule::SuppressMain { .. } => format!(
                "ip {} rule delete table main suppress_prefixlength 0",
                self.family()
            ),
        }
    }
}

/// What wg-quick would route for a config.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    /// The `dev IFACE` routes.
    pub routes: BTreeSet<Route>,
    /// The rules of default routes (`Table = auto` and a `/0`).
    pub rules: BTreeSet<Rule>,
    /// The fwmark the default routes need on the device, when the config
    /// sets none (wg-quick's `wg set IFACE fwmark T`).
    pub fwmark: Option<u32>,
    /// `Table = NAME`: routes not managed live.
    pub unmanaged: Option<String>,
}

/// The table of default routes: the config's `FwMark`, else the device's
/// fwmark, else the first table from 51820 with no route in it.
pub fn default_table(spec: &Spec, now: &Snapshot) -> u32 {
    spec.fwmark.or(now.fwmark).unwrap_or_else(|| {
        let mut table = FIRST_DEFAULT_TABLE;
        while now.tables.contains(&table) {
            table += 1;
        }
        table
    })
}

/// What wg-quick would route for `spec`, on an interface whose main table
/// holds `now.covering` (the kernel's routes into it, e.g. the `Address`
/// prefix routes); default routes go to `default_table`.
pub fn wanted(spec: &Spec, now: &Snapshot) -> Wanted {
    let covering = &now.covering;
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
            let table = default_table(spec, now);
            for &net in &spec.nets {
                if net.prefix_len() == 0 {
                    let v6 = net.addr().is_ipv6();
                    out.routes.insert(Route { table, net });
                    out.rules.insert(Rule::NotFwmark { v6, table });
                    out.rules.insert(Rule::SuppressMain { v6 });
                    if spec.fwmark.is_none() {
                        out.fwmark = Some(table);
                    }
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
    /// The rules of the shapes wg-quick adds, present now.
    pub rules: BTreeSet<Rule>,
    /// Every table that holds a route (to pick a free one).
    pub tables: BTreeSet<u32>,
    /// The device's fwmark.
    pub fwmark: Option<u32>,
}

/// The difference to apply: the fwmark first, then rules and routes
/// deleted, then added.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub delete: Vec<Route>,
    pub add: Vec<Route>,
    pub delete_rules: Vec<Rule>,
    pub add_rules: Vec<Rule>,
    /// Set the device's fwmark (0: none).
    pub fwmark: Option<u32>,
}

/// The fwmark to set: the one default routes need, or none once no
/// default route is left and the config sets none (as after a restart).
fn fwmark_change(spec_fwmark: Option<u32>, new: &Wanted, now: &Snapshot) -> Option<u32> {
    match (new.fwmark, now.fwmark) {
        (Some(t), live) if live != Some(t) => Some(t),
        (None, Some(_)) if spec_fwmark.is_none() && new.rules.is_empty() => Some(0),
        _ => None,
    }
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.delete.is_empty()
            && self.add.is_empty()
            && self.delete_rules.is_empty()
            && self.add_rules.is_empty()
            && self.fwmark.is_none()
    }

    /// A change of config from `old` to `new`: the routes `old` wanted and
    /// `new` does not go (when present), every route `new` wants and the
    /// kernel lacks comes. Routes nobody asked for (added by hand or by a
    /// `PostUp`) stay: `repair` reports them ([`Changes::repair`]).
    pub fn between(old: &Wanted, new: &Wanted, spec: &Spec, now: &Snapshot) -> Changes {
        Changes {
            delete: old
                .routes
                .difference(&new.routes)
                .filter(|r| now.present.contains(r))
                .copied()
                .collect(),
            add: new.routes.difference(&now.present).copied().collect(),
            delete_rules: old
                .rules
                .difference(&new.rules)
                .filter(|r| now.rules.contains(r))
                .copied()
                .collect(),
            add_rules: new.rules.difference(&now.rules).copied().collect(),
            fwmark: fwmark_change(spec.fwmark, new, now),
        }
    }

    /// Everything that differs from what `wanted` routes: missing routes
    /// and rules come, routes into the interface nobody asked for go, and
    /// so do the rules of the device's fwmark table when no default route
    /// is wanted (as `wg-quick down` deletes them).
    pub fn repair(wanted: &Wanted, spec: &Spec, now: &Snapshot) -> Changes {
        let table = now.fwmark.or(spec.fwmark);
        Changes {
            delete: now.present.difference(&wanted.routes).copied().collect(),
            add: wanted.routes.difference(&now.present).copied().collect(),
            delete_rules: now
                .rules
                .iter()
                .filter(|r| !wanted.rules.contains(r))
                .filter(|r| match r {
                    Rule::NotFwmark { table: t, .. } => Some(*t) == table,
                    Rule::SuppressMain { v6 } => table.is_some_and(|t| {
                        now.rules.contains(&Rule::NotFwmark { v6: *v6, table: t })
                    }),
                })
                .copied()
                .collect(),
            add_rules: wanted.rules.difference(&now.rules).copied().collect(),
            fwmark: fwmark_change(spec.fwmark, wanted, now),
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
    let wanted = wanted(&spec, now);
    if wanted.unmanaged.is_some() {
        return (Changes::default(), Vec::new());
    }
    let hooks = doc.sections().filter(|s| s.is_interface()).any(|s| {
        s.key_values()
            .any(|(k, _, _)| wg_key_eq(k, "PreUp") || wg_key_eq(k, keys::POST_UP))
    });
    let mut changes = Changes::repair(&wanted, &spec, now);
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
    lines.extend(changes.add_rules.iter().map(|r| {
        format!(
            "rule of the default route through {iface} is missing: `{}`",
            r.add_command()
        )
    }));
    lines.extend(changes.delete_rules.iter().map(|r| {
        format!(
            "rule of a default route through {iface} that the config no longer has: `{}`",
            r.del_command()
        )
    }));
    match changes.fwmark {
        Some(0) => lines.push(format!(
            "{iface} keeps the fwmark of a default route the config no longer has: `wg set {iface} fwmark off`"
        )),
        Some(mark) => lines.push(format!(
            "{iface} lacks the fwmark its default route needs: `wg set {iface} fwmark {mark}`"
        )),
        None => {}
    }
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

    fn covering(list: &[&str]) -> Snapshot {
        Snapshot {
            covering: nets(list),
            ..Snapshot::default()
        }
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
        let w = wanted(&s, &covering(&["10.15.0.0/24"]));
        assert_eq!(
            routes(&w),
            ["192.168.77.0/24", "fd00:7::/64", "0.0.0.0/0 (table 51820)"]
        );
        assert_eq!(
            w.rules,
            [
                Rule::NotFwmark {
                    v6: false,
                    table: 51820
                },
                Rule::SuppressMain { v6: false }
            ]
            .into()
        );
        assert_eq!(w.fwmark, Some(51820));
        assert_eq!(
            w.rules.iter().map(|r| r.add_command()).collect::<Vec<_>>(),
            [
                "ip -4 rule add not fwmark 51820 table 51820",
                "ip -4 rule add table main suppress_prefixlength 0"
            ]
        );
        // Without the prefix route (Address = 10.15.0.1/32) every host route.
        let w = wanted(&s, &Snapshot::default());
        assert_eq!(routes(&w).len(), 5);
        // The table is the config's fwmark, else the device's, else the
        // first free one from 51820.
        let busy = Snapshot {
            tables: [51820, 51821].into(),
            ..Snapshot::default()
        };
        assert_eq!(default_table(&s, &busy), 51822);
        let marked = Snapshot {
            fwmark: Some(77),
            ..busy
        };
        assert_eq!(default_table(&s, &marked), 77);
        let w = wanted(&s, &marked);
        assert_eq!(w.fwmark, Some(77));
        let c = Changes::between(&Wanted::default(), &w, &s, &marked);
        assert_eq!(c.fwmark, None, "the device has it already");
        // The default route gone: rules deleted, fwmark cleared.
        let had = Snapshot {
            rules: w.rules.clone(),
            present: w.routes.clone(),
            ..marked.clone()
        };
        let none = spec(&conf("", "10.15.0.2/32", "10.15.0.3/32"));
        let gone = wanted(&none, &had);
        let c = Changes::between(&w, &gone, &none, &had);
        assert_eq!(c.delete_rules.len(), 2);
        assert_eq!(c.fwmark, Some(0));
        assert_eq!(Changes::repair(&gone, &none, &had).delete_rules.len(), 2);
    }

    #[test]
    fn a_numbered_table_takes_every_network_and_off_none() {
        let s = spec(&conf("Table = 1234", "10.15.0.2/32", "0.0.0.0/0"));
        let w = wanted(&s, &covering(&["10.15.0.0/24"]));
        assert_eq!(
            routes(&w),
            ["0.0.0.0/0 (table 1234)", "10.15.0.2/32 (table 1234)"]
        );
        assert!(w.rules.is_empty() && w.fwmark.is_none());
        let s = spec(&conf("Table = off", "10.15.0.2/32", "192.168.1.0/24"));
        assert_eq!(wanted(&s, &Snapshot::default()), Wanted::default());
        let s = spec(&conf("Table = vpn", "10.15.0.2/32", "192.168.1.0/24"));
        assert_eq!(
            wanted(&s, &Snapshot::default()).unmanaged.as_deref(),
            Some("vpn")
        );
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
        let s = spec(&conf("", "10.15.0.2/32", "10.15.0.3/32"));
        let c = Changes::between(&old, &new, &s, &now);
        assert_eq!(c.delete, [route("192.168.77.0/24")]);
        assert_eq!(c.add, [route("192.168.78.0/24"), route("192.168.79.0/24")]);
        let r = Changes::repair(&new, &s, &now);
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

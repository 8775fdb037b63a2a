//! `relay-enable` / `relay-disable`: let this node forward traffic between
//! its peers, and undo exactly that. Two things are needed: IPv4
//! forwarding on the WireGuard interface alone (not host-wide), and, where
//! a firewall is in use, one FORWARD rule from the interface to itself
//! (planned in `plan::hooks`). They are applied now when the interface is
//! up, and kept across restarts as PostUp/PreDown lines marked
//! `# wgp2p relay` in the config.
//!
//! What `relay-enable` changed live (the forwarding value before, whether
//! the rule already existed) is recorded in `relay-state`, in the same
//! transaction as the config; `relay-disable` restores exactly that, and
//! touches nothing live that wgp2p did not do.
//!
//! Host-wide settings (`ip_forward`, `conf/all/*`) are left alone: the relay
//! may send ICMP redirects (they need `conf/all/send_redirects=0` to stop),
//! but on a WireGuard interface they change nothing, since the peer's
//! AllowedIPs, not a gateway, decide where a packet goes.

use crate::commit::commit_change;
use crate::config::node::{RELAY_STATE, read_entry};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::plan::hooks::{self, Record, Rule};
use crate::store::Change;
use crate::system::{on_path, run};

fn read_proc(path: &str) -> Result<String> {
    std::fs::read_to_string(path)
        .map(|v| v.trim().to_string())
        .map_err(|e| Error::System(format!("cannot read {path}: {e}")))
}

fn write_proc(path: &str, value: &str) -> Result<()> {
    std::fs::write(path, value)
        .map_err(|e| Error::System(format!("cannot write {value:?} to {path}: {e}")))
}

fn iptables(action: Rule, iface: &str) -> Result<()> {
    let args = hooks::forward_rule(action, iface);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run("iptables", &args)
}

pub fn enable(ctx: &Context) -> Result<()> {
    ctx.require_root("relay-enable")?;
    let (_lock, node) = ctx.lock_and_load()?;
    let doc = node.require_conf()?;
    if doc.interface().is_none() {
        return Err(Error::BadConfig(format!(
            "{} has no [Interface] section: run `wgp2p install` again",
            node.paths.conf_name()
        )));
    }
    let firewall = on_path("iptables");
    let iface = ctx.paths.iface.as_str();
    let device = ctx.device();
    let up = device.is_up()?;
    let recorded = read_entry(&node.paths.relay_state())?;
    let mut change = Change::new();
    if let Some(new_doc) = hooks::enable(doc, firewall) {
        change.write(node.paths.conf_name(), new_doc.render());
    }
    // What is there now, read before anything changes; a second
    // relay-enable keeps the first record (the state before wgp2p).
    let mut rule_preexisted = false;
    if up {
        rule_preexisted = firewall && iptables(Rule::Check, iface).is_ok();
        if recorded.is_none() {
            let record = Record {
                forwarding: read_proc(&hooks::forwarding_path(iface))?,
                rule_preexisted,
            };
            change.write(RELAY_STATE, record.render());
        }
    }
    commit_change(&node, &change, &[], device.as_ref())?;
    if !up {
        crate::outln!("relaying enabled in the config; it takes effect at the next `wgp2p start`");
        return Ok(());
    }
    write_proc(&hooks::forwarding_path(iface), "1")?;
    if firewall && !rule_preexisted {
        iptables(Rule::Insert, iface)?;
    }
    let without_iptables = if firewall {
        ""
    } else {
        " (no iptables here: no FORWARD rule needed or added)"
    };
    crate::outln!(
        "relaying enabled on {iface}: peers may now be routed through this node{without_iptables}"
    );
    Ok(())
}

pub fn disable(ctx: &Context) -> Result<()> {
    ctx.require_root("relay-disable")?;
    let (_lock, node) = ctx.lock_and_load()?;
    let doc = node.require_conf()?;
    let iface = ctx.paths.iface.as_str();
    let record_path = node.paths.relay_state();
    let record = match read_entry(&record_path)? {
        Some(text) => Some(Record::parse(&text).ok_or_else(|| {
            Error::BadConfig(format!(
                "{} is not a record wgp2p wrote: expected `forwarding = 0|1` and `forward-rule = added|pre-existing`; delete it to leave the live settings alone",
                record_path.display()
            ))
        })?),
        None => None,
    };
    let hooked = hooks::enabled(doc);
    if record.is_none() && !hooked {
        crate::outln!(
            "relaying was not enabled by wgp2p on {iface}: nothing changed (forwarding and firewall rules are left as they are)"
        );
        return Ok(());
    }
    let device = ctx.device();
    if device.is_up()? {
        // Undo live first: were the files changed first and the run
        // killed, nothing would remember what to undo.
        let (forwarding, rule_added) = match &record {
            Some(record) => (record.forwarding.clone(), !record.rule_preexisted),
            // Enabled while down, then started: the hooks set forwarding
            // (a new interface starts with the default) and inserted one rule.
            None => (read_proc(hooks::DEFAULT_FORWARDING)?, true),
        };
        write_proc(&hooks::forwarding_path(iface), &forwarding)?;
        if rule_added && on_path("iptables") && iptables(Rule::Check, iface).is_ok() {
            iptables(Rule::Delete, iface)?;
        }
    }
    let mut change = Change::new();
    if let Some(new_doc) = hooks::disable(doc) {
        change.write(node.paths.conf_name(), new_doc.render());
    }
    if record.is_some() {
        change.remove(RELAY_STATE);
    }
    commit_change(&node, &change, &[], device.as_ref())?;
    crate::outln!("relaying disabled on {iface}: what relay-enable changed is undone");
    Ok(())
}

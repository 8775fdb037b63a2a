//! `relay-enable` / `relay-disable`: let this node forward traffic between
//! its peers, and undo exactly that. Two things are needed: IPv4
//! forwarding on the WireGuard interface alone (not host-wide), and, where
//! a firewall is in use, one FORWARD rule from the interface to itself.
//! They are applied now when the interface is up, and kept across restarts
//! as PostUp/PreDown lines marked `# wgp2p relay` in the config.
//! Host-wide settings (ip_forward, conf/all/*) are left alone: the relay
//! may send ICMP redirects (they need conf/all/send_redirects=0 to stop),
//! but on a WireGuard interface they change nothing, since the peer's
//! AllowedIPs, not a gateway, decide where a packet goes.

use crate::commit::commit;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::system::{on_path, run};

const MARKER: &str = "wgp2p relay";

/// The hook lines for the config (`%i` is the interface, filled in by wg-quick).
fn hooks(with_firewall: bool) -> (Vec<&'static str>, Vec<&'static str>) {
    let mut post_up = vec!["echo 1 > /proc/sys/net/ipv4/conf/%i/forwarding"];
    let mut pre_down = Vec::new();
    if with_firewall {
        post_up.push("iptables -I FORWARD -i %i -o %i -j ACCEPT");
        pre_down.push("iptables -D FORWARD -i %i -o %i -j ACCEPT");
    }
    (post_up, pre_down)
}

fn write_proc(path: &str, value: &str) -> Result<()> {
    std::fs::write(path, value)
        .map_err(|e| Error::System(format!("cannot write {value:?} to {path}: {e}")))
}

/// The FORWARD rule for this interface, as iptables arguments.
fn rule<'a>(action: &'a str, iface: &'a str) -> [&'a str; 9] {
    [
        action, "FORWARD", "-i", iface, "-o", iface, "-j", "ACCEPT", "-w",
    ]
}

pub fn enable(ctx: &Context) -> Result<()> {
    ctx.require_root("relay-enable")?;
    let (_lock, node) = ctx.lock_and_load()?;
    let doc = node.require_conf()?;
    let index = doc.interface_position().ok_or_else(|| {
        Error::BadConfig(format!(
            "{} has no [Interface] section: run `wgp2p install` again",
            node.paths.conf_name()
        ))
    })?;
    let firewall = on_path("iptables");
    if !doc.has_marked(index, MARKER) {
        let mut new_doc = doc.clone();
        let (post_up, pre_down) = hooks(firewall);
        for line in post_up {
            new_doc.append_marked(index, "PostUp", line, MARKER);
        }
        for line in pre_down {
            new_doc.append_marked(index, "PreDown", line, MARKER);
        }
        commit(&node, &new_doc, &[], ctx.device().as_ref())?;
    }
    let iface = ctx.paths.iface.as_str();
    if !ctx.device().is_up()? {
        crate::outln!("relaying enabled in the config; it takes effect at the next `wgp2p start`");
        return Ok(());
    }
    write_proc(&format!("/proc/sys/net/ipv4/conf/{iface}/forwarding"), "1")?;
    if firewall && run("iptables", &rule("-C", iface)).is_err() {
        run("iptables", &rule("-I", iface))?;
    }
    let note = if firewall {
        ""
    } else {
        " (no iptables here: no FORWARD rule needed or added)"
    };
    crate::outln!("relaying enabled on {iface}: peers may now be routed through this node{note}");
    Ok(())
}

pub fn disable(ctx: &Context) -> Result<()> {
    ctx.require_root("relay-disable")?;
    let (_lock, node) = ctx.lock_and_load()?;
    let doc = node.require_conf()?;
    if let Some(index) = doc.interface_position()
        && doc.has_marked(index, MARKER)
    {
        let mut new_doc = doc.clone();
        new_doc.remove_marked(index, MARKER);
        commit(&node, &new_doc, &[], ctx.device().as_ref())?;
    }
    let iface = ctx.paths.iface.as_str();
    if ctx.device().is_up()? {
        write_proc(&format!("/proc/sys/net/ipv4/conf/{iface}/forwarding"), "0")?;
        // Remove every copy of the rule, however many times it was added.
        while on_path("iptables") && run("iptables", &rule("-C", iface)).is_ok() {
            run("iptables", &rule("-D", iface))?;
        }
    }
    crate::outln!("relaying disabled on {iface}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_touch_only_the_interface() {
        let (up, down) = hooks(true);
        assert!(up.iter().all(|l| l.contains("%i")) && down.iter().all(|l| l.contains("%i")));
        assert!(!up.join(";").contains("ip_forward") && !up.join(";").contains("/all/"));
        assert_eq!(down, ["iptables -D FORWARD -i %i -o %i -j ACCEPT"]);
        let (up, down) = hooks(false);
        assert_eq!(up.len(), 1);
        assert!(down.is_empty());
    }
}

//! `nat-check [--stun-server HOST[:PORT]]... [--json]`: the public address
//! and the NAT's behaviour for the listen port, with what it means for the
//! mesh and what to do about it.

use crate::announce;
use crate::config::node::Node;
use crate::context::Context;
use crate::discover::{self, NatReport};
use crate::error::{Error, Result};

pub fn run(ctx: &Context, given: &[String]) -> Result<()> {
    let servers = if given.is_empty() {
        discover::servers_from(ctx.env.stun_servers.as_deref())
    } else {
        discover::parse_server_list(&given.join(","))
    };
    // Probe from the WireGuard port itself when it is free (interface
    // down); the module falls back to another port and says so otherwise.
    let port = match Node::load(ctx.paths.clone()) {
        Ok(node) => announce::effective_port(ctx, &node)?,
        Err(_) => ctx.port.unwrap_or(announce::DEFAULT_PORT),
    };
    let report = discover::nat_check(&servers, Some(port), discover::BUDGET);
    if ctx.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| Error::System(format!("cannot write JSON: {e}")))?;
        crate::outln!("{text}");
    } else {
        crate::out!("{}", human(&report));
    }
    Ok(())
}

fn human(report: &NatReport) -> String {
    use std::fmt::Write;
    let public = report
        .public_ip
        .map_or("unknown".to_string(), |ip| ip.to_string());
    // Writing into a String cannot fail.
    let mut out = format!("public IP: {public}\n");
    if let Some(local) = report.local_addr {
        let _ = writeln!(out, "local socket: {local}");
    }
    for m in &report.mappings {
        let _ = writeln!(out, "  {} saw {}", m.server, m.mapped);
    }
    let _ = writeln!(out, "NAT type: {}", report.nat_type.as_str());
    let _ = writeln!(out, "verdict: {}", report.verdict);
    let _ = writeln!(out, "{}", report.advice);
    out
}

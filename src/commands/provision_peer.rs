//! `provision-peer NAME ENDPOINT ADDRESS/CIDR [--qr] [--mesh]`: a ready
//! conf for a device that cannot run wgp2p (a phone, a Windows PC). Its
//! private key is made here and written only into that 0600 file.

use std::fmt::Write as _;

use crate::announce;
use crate::config::document::Document;
use crate::config::node::PeerEntry;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::output;
use crate::plan::{self, AddPeer, Own};
use crate::store;
use crate::types::{AllowedIps, Endpoint, PeerIp, PeerName, PrivateKey, PublicKey, VpnAddress};

pub struct Request {
    pub name: PeerName,
    pub endpoint: Endpoint,
    pub address: VpnAddress,
    pub qr: bool,
    pub mesh: bool,
}

/// What the conf says about one peer of the new device.
struct ConfPeer {
    name: String,
    public_key: PublicKey,
    endpoint: String,
    allowed_ips: String,
}

pub fn run(ctx: &Context, request: Request) -> Result<()> {
    ctx.require_root("provision-peer")?;
    let (_lock, node) = ctx.lock_and_load()?;
    let own = Own::of(&node)?;
    let doc = node.require_conf()?;
    let file = node
        .paths
        .provisioned_dir()
        .join(format!("{}.conf", request.name));
    if file.exists() {
        return Err(Error::Conflict(format!(
            "{} already exists: choose another name, or delete that file (and `wgp2p remove-peer {}`) first",
            file.display(),
            request.name
        )));
    }
    check_other_devices(&node.paths.provisioned_dir(), &request.address)?;
    let device_key = PrivateKey::generate();
    let add = AddPeer {
        name: request.name.clone(),
        endpoint: request.endpoint.clone(),
        public_key: device_key.public_key(),
        peer_ip: PeerIp {
            ip: request.address.ip(),
            dropped_prefix: None,
        },
        extra_allowed_ips: AllowedIps::default(),
        keepalive: 25,
    };
    // The line we print must succeed here: check it against the rules now.
    plan::add_peer(doc.clone(), &node.paths.conf_name(), &own, &add)?;
    let port = announce::effective_port(ctx, &node);
    let own_endpoint = announce::endpoint_text(ctx, &node, port)?;
    let mut peers = vec![ConfPeer {
        name: announce::host_name().to_string(),
        public_key: own.public_key,
        endpoint: own_endpoint,
        allowed_ips: own.address.host_route().to_string(),
    }];
    if request.mesh {
        peers.extend(node.peers()?.iter().filter_map(mesh_peer));
    }
    let conf = device_conf(&request, &device_key, &peers);
    store::ensure_dir(&node.paths.provisioned_dir())?;
    store::write_atomic(
        &node.paths.provisioned_dir(),
        &format!("{}.conf", request.name),
        conf.as_bytes(),
    )?;
    crate::outln!(
        "wrote {} (mode 0600; it holds the device's private key)",
        file.display()
    );
    if request.qr {
        crate::outln!("{}", output::qr_code(&conf)?);
    }
    let where_ = if request.mesh {
        "on every mesh node, this one included"
    } else {
        "on this node"
    };
    crate::outln!("Run this {where_} to add the device:");
    crate::outln!(
        "{}",
        announce::add_peer_line(
            &request.name,
            &request.endpoint.to_string(),
            &add.public_key,
            request.address.ip()
        )
    );
    Ok(())
}

/// Devices provisioned earlier are not peers until their line is run, so
/// their addresses are checked here: two devices must not share one.
fn check_other_devices(dir: &std::path::Path, address: &VpnAddress) -> Result<()> {
    let Ok(files) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for file in files.flatten() {
        let Ok(text) = std::fs::read_to_string(file.path()) else {
            continue;
        };
        let Ok(doc) = Document::parse(&text) else {
            continue;
        };
        let addresses = doc
            .interface()
            .map(|s| s.get_all("Address"))
            .unwrap_or_default();
        let taken = addresses
            .iter()
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse::<VpnAddress>().ok())
            .any(|a| a.ip() == address.ip());
        if taken {
            return Err(Error::Conflict(format!(
                "address {} is already given to the device in {}: expected a free address",
                address.ip(),
                file.path().display()
            )));
        }
    }
    Ok(())
}

/// A mesh peer for the device's conf; peers without an endpoint are left
/// out (the device could never reach them first).
fn mesh_peer(entry: &PeerEntry) -> Option<ConfPeer> {
    Some(ConfPeer {
        name: entry.display_name().to_string(),
        public_key: entry.public_key,
        endpoint: entry.endpoint.clone()?,
        allowed_ips: entry
            .allowed_ips
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

fn device_conf(request: &Request, key: &PrivateKey, peers: &[ConfPeer]) -> String {
    let mut conf = String::new();
    let _ = writeln!(conf, "[Interface]");
    let _ = writeln!(conf, "# Name = {}", request.name);
    let _ = writeln!(conf, "PrivateKey = {}", key.expose_base64());
    let _ = writeln!(conf, "Address = {}", request.address);
    let _ = writeln!(conf, "ListenPort = {}", request.endpoint.port);
    for peer in peers {
        let _ = writeln!(conf);
        let _ = writeln!(conf, "[Peer]");
        let _ = writeln!(conf, "# Name = {}", peer.name);
        let _ = writeln!(conf, "PublicKey = {}", peer.public_key);
        let _ = writeln!(conf, "Endpoint = {}", peer.endpoint);
        let _ = writeln!(conf, "AllowedIPs = {}", peer.allowed_ips);
        let _ = writeln!(conf, "PersistentKeepalive = 25");
    }
    conf
}

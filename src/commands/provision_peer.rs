//! `provision-peer NAME ENDPOINT ADDRESS/CIDR [--qr] [--mesh]`: a ready
//! conf for a device that cannot run wgp2p (a phone, a Windows PC). Its
//! private key is made here and written only into that 0600 file.

use crate::announce;
use crate::commit::commit_change;
use crate::config::document::{Document, keys};
use crate::config::node::PeerEntry;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::output;
use crate::plan::{self, AddPeer};
use crate::store::{self, Change};
use crate::types::{Endpoint, PeerIp, PeerName, PrivateKey, PublicKey, VpnAddress};

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

pub fn run(ctx: &Context, request: &Request) -> Result<()> {
    ctx.require_root("provision-peer")?;
    let (_lock, node) = ctx.lock_and_load()?;
    let own = crate::host::own(ctx, &node)?;
    let doc = node.require_conf()?;
    let entry = format!("{}/{}.conf", store::PROVISIONED, request.name);
    let file = node.paths.dir.join(&entry);
    if store::current(&node.paths.dir, &entry)?.is_some() {
        return Err(Error::Conflict(format!(
            "{} already exists: choose another name, or delete that file (and `wgp2p remove-peer {}`) first",
            file.display(),
            request.name
        )));
    }
    check_other_devices(&node.paths.dir, &request.address)?;
    let device_key = PrivateKey::generate();
    let add = AddPeer {
        name: request.name.clone(),
        endpoint: request.endpoint.clone(),
        public_key: device_key.public_key(),
        peer_ip: PeerIp::from(request.address.ip()),
        extra_allowed_ips: None,
        keepalive: None,
    };
    // The line we print must succeed here: check it against the rules now.
    plan::add_peer(doc.clone(), &own, &add)?;
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
    let conf = device_conf(request, &device_key, &peers, add.keepalive_or_default())?;
    // What can fail comes before the write: a conf too big for a QR code
    // is refused with nothing written.
    let qr = if request.qr {
        Some(output::qr_code(&conf).map_err(|e| {
            Error::Invalid(format!(
                "{e}: the conf of {} ({} bytes, {} peers) is too big for one QR code; nothing was written: run it again without --qr (and copy the file), or without --mesh",
                request.name,
                conf.len(),
                peers.len()
            ))
        })?)
    } else {
        None
    };
    let mut change = Change::new();
    change.write(entry, conf);
    commit_change(&node, &change, &[], ctx.device().as_ref())?;
    crate::outln!(
        "wrote {} (mode 0600; it holds the device's private key)",
        file.display()
    );
    if let Some(qr) = qr {
        crate::outln!("{qr}");
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
    for name in store::provisioned_files(dir)? {
        let entry = format!("{}/{name}", store::PROVISIONED);
        let Some(bytes) = store::current(dir, &entry)? else {
            continue;
        };
        let Ok(text) = String::from_utf8(bytes) else {
            continue;
        };
        let Ok(doc) = Document::parse(&text) else {
            continue;
        };
        let addresses = doc
            .interface()
            .map(|s| s.get_all(keys::ADDRESS))
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
                dir.join(&entry).display()
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
        endpoint: entry.endpoint.as_ref()?.to_string(),
        allowed_ips: entry
            .allowed_ips
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// The device's conf, built through the same document model as every
/// other config wgp2p writes; every peer gets the keepalive of the
/// device's own add-peer line.
fn device_conf(
    request: &Request,
    key: &PrivateKey,
    peers: &[ConfPeer],
    keepalive: u16,
) -> Result<String> {
    let mut doc = Document::parse("[Interface]\n")?;
    doc.set_interface_name(request.name.as_str());
    doc.set_interface(keys::PRIVATE_KEY, &key.expose_base64());
    doc.set_interface(keys::ADDRESS, &request.address.to_string());
    doc.set_interface(keys::LISTEN_PORT, &request.endpoint.port().to_string());
    for peer in peers {
        let key = &peer.public_key;
        doc.append_peer(key);
        doc.set_name(key, &peer.name);
        doc.set_peer(key, keys::ENDPOINT, &peer.endpoint);
        doc.set_peer(key, keys::ALLOWED_IPS, &peer.allowed_ips);
        doc.set_peer(key, keys::PERSISTENT_KEEPALIVE, &keepalive.to_string());
    }
    Ok(doc.render())
}

//! One file per command; each reads like its paragraph in docs/behaviour.md.

mod add_peer;
pub mod agent;
mod completions;
mod dependencies;
mod doctor;
mod export;
mod import_key;
mod install;
mod nat_check;
mod provision_peer;
mod refusals;
mod relay;
mod relay_forwarding;
mod remove_peer;
mod repair;
mod start_stop;
mod status;
mod sync;
mod trust;
mod uninstall;

use crate::cli::Command;
use crate::context::Context;
use crate::error::Result;

pub fn run(ctx: &Context, command: Command) -> Result<()> {
    match command {
        Command::Dependencies { dry_run } => dependencies::run(ctx, dry_run),
        Command::Install {
            address,
            endpoint,
            agent: with_agent,
            accept_introductions,
        } => {
            // Refused before anything is installed when it cannot be done.
            if with_agent {
                agent::require_systemd(ctx, "enable")?;
            }
            install::run(ctx, address, endpoint.as_ref(), accept_introductions)?;
            if with_agent {
                agent::enable(ctx, crate::agent::unit::Options::default())?;
            }
            Ok(())
        }
        Command::Uninstall { keep_keys } => uninstall::run(ctx, keep_keys),
        Command::Start => start_stop::start(ctx),
        Command::Stop => start_stop::stop(ctx),
        Command::Status { check } => status::run(ctx, check),
        Command::ImportKey { key } => import_key::run(ctx, key.as_deref()),
        Command::AddPeer(args) => add_peer::run(ctx, args),
        Command::RemovePeer { peer } => remove_peer::run(ctx, &peer),
        Command::Doctor => doctor::run(ctx),
        Command::Repair { dry_run } => repair::run(ctx, dry_run),
        Command::Relay { peer, mode, relay } => relay::run(ctx, &peer, mode, relay.as_ref()),
        Command::RelayEnable => relay_forwarding::enable(ctx),
        Command::RelayDisable => relay_forwarding::disable(ctx),
        Command::Export { endpoint } => export::run(ctx, endpoint.as_ref()),
        Command::Sync {
            roster,
            dry_run,
            prune,
            adopt,
        } => sync::run(
            ctx,
            &roster,
            dry_run,
            crate::plan::sync::Options { prune, adopt },
        ),
        Command::Agent(args) => agent::run(ctx, args),
        Command::Trust { peer } => trust::run(ctx, peer.as_ref()),
        Command::Untrust { peer } => trust::untrust(ctx, &peer),
        Command::Completions { shell } => completions::completions(shell),
        Command::Man => completions::man(),
        Command::NatCheck { stun_servers } => nat_check::run(ctx, &stun_servers),
        Command::ProvisionPeer {
            name,
            endpoint,
            address,
            qr,
            mesh,
        } => provision_peer::run(
            ctx,
            &provision_peer::Request {
                name,
                endpoint,
                address,
                qr,
                mesh,
            },
        ),
    }
}

//! wgp2p: a peer-to-peer, full-mesh WireGuard VPN with no central server.
//! A map of the modules and their layers: docs/architecture.md.

// Only `sys` holds code the compiler cannot check (it allows it for itself).
#![deny(unsafe_code)]

mod agent;
mod announce;
mod cli;
mod commands;
mod commit;
mod config;
mod context;
mod device;
mod discover;
mod error;
mod health;
mod host;
mod membership;
mod output;
mod plan;
mod roster;
mod routing;
mod service;
mod status;
mod store;
mod sys;
mod system;
mod types;
mod wg;
mod words;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::config::node::Paths;
use crate::context::{Context, Env};

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_exit(&e),
    };
    let Some(command) = cli.command else {
        // No command: the usage, as for `help`.
        let _ = cli::Cli::command().print_help();
        return ExitCode::SUCCESS;
    };
    let paths = Paths::new(cli.config_dir, cli.interface);
    let result = Context::new(paths, cli.port, cli.json, Env::from_process())
        .and_then(|ctx| commands::run(&ctx, command));
    match result {
        Ok(()) if output::stdout_failed() => ExitCode::FAILURE,
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wgp2p: error: {e}");
            ExitCode::from(e.code())
        }
    }
}

/// Help and version print as clap makes them; a usage error becomes one
/// line (clap's own spans several, with the usage after a blank line).
fn clap_exit(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let rendered = e.render().to_string();
    let message: Vec<&str> = rendered
        .lines()
        .take_while(|l| !l.starts_with("Usage:"))
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
        .collect();
    // clap quotes the bad value raw; a carriage return in it would let the
    // terminal overwrite the line, so control characters are escaped.
    let message: String = message
        .join(" ")
        .chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect();
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    eprintln!("wgp2p: error: {message} (see `wgp2p help`)");
    ExitCode::from(2)
}

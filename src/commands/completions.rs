//! `completions SHELL` and the hidden `man`: both made from the one clap
//! definition, so they never disagree with `--help`.

use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::{Error, Result};

#[allow(
    clippy::unnecessary_wraps,
    reason = "a command like the others: `commands::run` matches on one signature"
)]
pub fn completions(shell: clap_complete::Shell) -> Result<()> {
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "wgp2p",
        &mut crate::output::Stdout,
    );
    Ok(())
}

pub fn man() -> Result<()> {
    clap_mangen::Man::new(Cli::command())
        .render(&mut crate::output::Stdout)
        .map_err(|e| Error::System(format!("cannot write the man page: {e}")))
}

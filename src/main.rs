//! The `xmpp-broadcast` binary: parses the command line and runs the chosen command.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = xmpp_broadcast::cli::Cli::parse();
    xmpp_broadcast::cli::run(cli)
}

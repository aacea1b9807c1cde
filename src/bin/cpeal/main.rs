//! The `cpeal` command line. Parsing lives in `args.rs`, one module per subcommand under `cmd/`; this file
//! only dispatches and turns an error into a message and a non-zero exit code.

mod args;
mod cmd;

use clap::Parser;

fn main() {
    let cli = args::Cli::parse();
    if let Err(err) = cmd::dispatch(cli.command) {
        eprintln!("error: {err}");
        std::process::exit(1);
    }
}

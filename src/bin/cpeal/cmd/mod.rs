//! One module per subcommand; `dispatch` is the only place that knows them all.

pub mod bench;
pub mod embed;
pub mod info;

use crate::args::Command;

pub fn dispatch(command: Command) -> cpeal::Result<()> {
    match command {
        Command::Info(args) => info::run(&args),
        Command::Embed(args) => embed::run(&args),
        Command::Bench(args) => bench::run(&args),
    }
}

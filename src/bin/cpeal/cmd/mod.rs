//! One module per subcommand; `dispatch` is the only place that knows them all.

pub mod info;
pub mod select;

use crate::args::Command;

pub fn dispatch(command: Command) -> cpeal::Result<()> {
    match command {
        Command::Info(args) => info::run(&args),
        Command::Select(args) => select::run(&args),
    }
}

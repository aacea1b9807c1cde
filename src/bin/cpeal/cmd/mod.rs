//! One module per subcommand; `dispatch` is the only place that knows them all.

pub mod convert;
pub mod info;

use crate::args::Command;

pub fn dispatch(command: Command) -> cpeal::Result<()> {
    match command {
        Command::Info(args) => info::run(&args),
        Command::ConvertOnnxDinov2(args) => convert::run(&args),
    }
}

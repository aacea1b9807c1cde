//! One module per subcommand; `dispatch` is the only place that knows them all.

pub mod bench_kernels;
pub mod info;
pub mod nvrtc_check;
pub mod selftest;

use crate::args::Command;

pub fn dispatch(command: Command) -> cpeal::Result<()> {
    match command {
        Command::Info(args) => info::run(&args),
        Command::NvrtcCheck(args) => nvrtc_check::run(&args),
        Command::Selftest(args) => selftest::run(&args),
        Command::BenchKernels(args) => bench_kernels::run(&args),
    }
}

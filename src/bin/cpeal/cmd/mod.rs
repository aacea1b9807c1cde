//! One module per subcommand; `dispatch` is the only place that knows them all.

pub mod bench;
pub mod bench_kernels;
pub mod bench_train;
pub mod convert;
pub mod embed;
pub mod embed_idx;
pub mod embed_images;
pub mod embed_text;
pub mod eval;
pub mod info;
pub mod labelled;
pub mod merge;
pub mod nvrtc_check;
pub mod run;
pub mod select;
pub mod selftest;
pub mod train;
pub mod zero_shot;

use crate::args::Command;

pub fn dispatch(command: Command) -> cpeal::Result<()> {
    match command {
        Command::Info(args) => info::run(&args),
        Command::Embed(args) => embed::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::EmbedText(args) => embed_text::run(&args),
        Command::ZeroShot(args) => zero_shot::run(&args),
        Command::ConvertOnnxDinov2(args) => convert::run(&args),
        Command::NvrtcCheck(args) => nvrtc_check::run(&args),
        Command::Selftest(args) => selftest::run(&args),
        Command::BenchKernels(args) => bench_kernels::run(&args),
        Command::Select(args) => select::run(&args),
        Command::Train(args) => train::run(&args),
        Command::Eval(args) => eval::run(&args),
        Command::Merge(args) => merge::run(&args),
        Command::Run(args) => run::run(&args),
    }
}

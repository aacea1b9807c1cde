//! `cpeal run`: an active-learning experiment from a TOML file (arms × seeds × rounds), resumable: the same
//! command continues where a killed run stopped. Each completed round is a line on standard error, or a JSON
//! object on standard output with `--json`.

use std::path::PathBuf;

use cpeal::al::{self, Experiment, RoundRecord};

#[derive(clap::Args)]
pub struct Args {
    /// the experiment (see configs/)
    #[arg(long)]
    pub config: PathBuf,
    /// the run directory (default: runs/<config file's stem>)
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// one JSON object per completed round on standard output
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> cpeal::Result<()> {
    let exp = Experiment::read(&args.config)?;
    let stem = args.config.file_stem().unwrap_or_default();
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(stem));
    let total = exp.arms.len() * exp.seeds.len() * exp.protocol.rounds;
    let records = al::run(&exp, &args.config, &out, |record| report_round(record, total, args.json))?;
    eprintln!("{} rounds done; results in {} (summary.md, metrics.csv, curves.svg)", records.len(), out.display());
    Ok(())
}

/// One completed round (of `total` in the experiment).
fn report_round(r: &RoundRecord, total: usize, json: bool) {
    if json {
        let line = serde_json::json!({"event": "round", "arm": r.arm, "seed": r.seed, "round": r.round,
            "rounds_in_experiment": total, "labelled": r.labelled, "metrics": r.metrics, "train_s": r.train_s,
            "select_s": r.select_s});
        println!("{line}");
    } else {
        let m = &r.metrics;
        eprintln!(
            "{} seed {} round {}: {} labelled, accuracy {:.4}, ECE {:.4}, NLL {:.4} ({:.1} s train, {:.1} s select)",
            r.arm, r.seed, r.round, r.labelled, m.accuracy, m.ece, m.nll, r.train_s, r.select_s
        );
    }
}

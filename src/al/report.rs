//! The reports of an active-learning run, made from its round records alone: `metrics.csv` and `timings.csv`
//! (one row per arm, seed and round), `summary.md` (each arm's final metrics and accuracy and ECE by round as
//! mean ± std over seeds) and `curves.svg` (accuracy and ECE against the number of labelled images).
//! Every report is a deterministic function of the records, so re-running the report gives identical files.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::RoundRecord;
use crate::error::Result;
use crate::metrics::Metrics;
use crate::weights::write_atomic;

/// `round,seed,strategy,n_labeled,accuracy,ece,nll,brier,auroc` — one row per record, ordered by the arm's
/// position in `arms`, then seed, then round. Floats printed with Rust's `{}` (shortest round-trip,
/// deterministic); auroc empty when None. Records whose arm is not in `arms` are left out.
pub fn metrics_csv(records: &[RoundRecord], arms: &[String]) -> String {
    let mut csv = String::from("round,seed,strategy,n_labeled,accuracy,ece,nll,brier,auroc\n");
    for r in in_report_order(records, arms) {
        let m = &r.metrics;
        let auroc = m.error_auroc.map(|a| a.to_string()).unwrap_or_default();
        let arm = csv_field(&r.arm);
        let _ = writeln!(
            csv,
            "{},{},{arm},{},{},{},{},{},{auroc}",
            r.round, r.seed, r.labelled, m.accuracy, m.ece, m.nll, m.brier
        );
    }
    csv
}

/// `round,seed,strategy,train_s,select_s`, same order, seconds with 3 decimals.
pub fn timings_csv(records: &[RoundRecord], arms: &[String]) -> String {
    let mut csv = String::from("round,seed,strategy,train_s,select_s\n");
    for r in in_report_order(records, arms) {
        let _ = writeln!(csv, "{},{},{},{:.3},{:.3}", r.round, r.seed, csv_field(&r.arm), r.train_s, r.select_s);
    }
    csv
}

/// Markdown: a `# {title}` heading; a table of the last round every seed of that arm completed (arm, labelled,
/// seeds, then accuracy, ECE, NLL, Brier and error AUROC as `mean ± std` over seeds, the sample std, shown only
/// with two or more seeds); then tables of accuracy and of ECE by round (rows = labelled count / round,
/// columns = arms). Arms in `arms` order; missing cells "—".
pub fn summary_md(records: &[RoundRecord], arms: &[String], title: &str) -> String {
    let mut md = format!("# {title}\n\n## Final round\n\n");
    md += "| arm | labelled | seeds | accuracy | ECE | NLL | Brier | error AUROC |\n";
    md += "|---|---:|---:|---:|---:|---:|---:|---:|\n";
    for arm in arms {
        let groups = rounds_of_arm(records, arm);
        let seeds = groups.iter().map(|g| g.records.len()).max().unwrap_or(0);
        let last = groups.iter().rev().find(|g| g.records.len() == seeds);
        let cells: Vec<String> = match last {
            Some(g) => SUMMARY_METRICS.iter().map(|&metric| cell(g.stat(metric))).collect(),
            None => vec!["—".into(); 5],
        };
        let labelled = last.map_or("—".into(), |g| g.labelled.to_string());
        let _ = writeln!(md, "| {} | {labelled} | {seeds} | {} |", markdown_cell(arm), cells.join(" | "));
    }
    md += &by_round_table("Accuracy by round", records, arms, ACCURACY);
    md += &by_round_table("ECE by round", records, arms, ECE);
    md
}

/// A standalone 900×400 SVG: accuracy and ECE (15 bins) against labelled images, side by side, one coloured
/// line per arm through each round's mean over seeds with a translucent ± one std band, a legend naming the arms
/// and the title on top. Deterministic: the same records give a byte-identical string.
pub fn curves_svg(records: &[RoundRecord], arms: &[String], title: &str) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 400)).into_drawing_area();
        draw_curves(&root, records, arms, title).expect("drawing into a String performs no I/O that could fail");
        root.present().expect("drawing into a String performs no I/O that could fail");
    }
    svg
}

/// Writes metrics.csv, timings.csv, summary.md and curves.svg into `dir` (atomically, each via write_atomic).
pub fn write_reports(dir: &Path, records: &[RoundRecord], arms: &[String], title: &str) -> Result<()> {
    write_atomic(&dir.join("metrics.csv"), metrics_csv(records, arms).as_bytes())?;
    write_atomic(&dir.join("timings.csv"), timings_csv(records, arms).as_bytes())?;
    write_atomic(&dir.join("summary.md"), summary_md(records, arms, title).as_bytes())?;
    write_atomic(&dir.join("curves.svg"), curves_svg(records, arms, title).as_bytes())
}

fn in_report_order<'a>(records: &'a [RoundRecord], arms: &[String]) -> Vec<&'a RoundRecord> {
    let mut keyed: Vec<_> = records
        .iter()
        .filter_map(|r| arms.iter().position(|a| *a == r.arm).map(|arm_index| ((arm_index, r.seed, r.round), r)))
        .collect();
    keyed.sort_by_key(|(key, _)| *key);
    keyed.into_iter().map(|(_, r)| r).collect()
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

fn markdown_cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// One number of a round's metrics; `None` where it is undefined (error AUROC).
type Metric = fn(&Metrics) -> Option<f64>;
const ACCURACY: Metric = |m| Some(m.accuracy);
const ECE: Metric = |m| Some(m.ece);
/// The final-round table's columns: accuracy, ECE, NLL, Brier, error AUROC.
const SUMMARY_METRICS: [Metric; 5] = [ACCURACY, ECE, |m| Some(m.nll), |m| Some(m.brier), |m| m.error_auroc];

/// One arm at one round: the records of the seeds that completed it.
struct RoundGroup<'a> {
    round: usize,
    labelled: usize,
    records: Vec<&'a RoundRecord>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct MeanStd {
    mean: f64,
    /// Sample standard deviation (n − 1); `None` with a single value.
    std: Option<f64>,
}

impl RoundGroup<'_> {
    /// Over the seeds that have the metric (error AUROC is undefined for a seed that got all right or all wrong).
    fn stat(&self, metric: Metric) -> Option<MeanStd> {
        let values: Vec<f64> = self.records.iter().filter_map(|r| metric(&r.metrics)).collect();
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let std =
            (values.len() > 1).then(|| (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
        (!values.is_empty()).then_some(MeanStd { mean, std })
    }
}

/// The arm's records grouped by round, in round order; the single place per-round statistics start from.
fn rounds_of_arm<'a>(records: &'a [RoundRecord], arm: &str) -> Vec<RoundGroup<'a>> {
    let mut by_round: BTreeMap<usize, RoundGroup<'a>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.arm == arm) {
        by_round
            .entry(r.round)
            .or_insert_with(|| RoundGroup { round: r.round, labelled: r.labelled, records: vec![] })
            .records
            .push(r);
    }
    by_round.into_values().collect()
}

fn cell(stat: Option<MeanStd>) -> String {
    match stat {
        None => "—".into(),
        Some(MeanStd { mean, std: None }) => format!("{mean:.4}"),
        Some(MeanStd { mean, std: Some(std) }) => format!("{mean:.4} ± {std:.4}"),
    }
}

fn by_round_table(heading: &str, records: &[RoundRecord], arms: &[String], metric: Metric) -> String {
    let per_arm: Vec<Vec<RoundGroup>> = arms.iter().map(|arm| rounds_of_arm(records, arm)).collect();
    // Rows keyed by (labelled, round): arms that label different numbers of images per round get their own rows.
    let rows: BTreeSet<(usize, usize)> = per_arm.iter().flatten().map(|g| (g.labelled, g.round)).collect();
    let mut md = format!("\n## {heading}\n\n| labelled (round) |");
    for arm in arms {
        let _ = write!(md, " {} |", markdown_cell(arm));
    }
    md += &format!("\n|---|{}\n", "---:|".repeat(arms.len()));
    for (labelled, round) in rows {
        let _ = write!(md, "| {labelled} ({round}) |");
        for groups in &per_arm {
            let group = groups.iter().find(|g| g.round == round && g.labelled == labelled);
            let _ = write!(md, " {} |", cell(group.and_then(|g| g.stat(metric))));
        }
        md.push('\n');
    }
    md
}

/// Tableau 10: distinct hues that stay readable as thin lines and translucent bands.
const ARM_COLOURS: [u32; 10] =
    [0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd, 0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22, 0x17becf];

fn arm_colour(index: usize) -> RGBColor {
    let hex = ARM_COLOURS[index % ARM_COLOURS.len()];
    RGBColor((hex >> 16) as u8, (hex >> 8) as u8, hex as u8)
}

/// One arm's curve for one metric: (labelled, mean, std) per round, std 0 with a single seed.
type Curve = Vec<(f64, f64, f64)>;

fn curve(records: &[RoundRecord], arm: &str, metric: Metric) -> Curve {
    let stats = rounds_of_arm(records, arm).into_iter().filter_map(|g| g.stat(metric).map(|s| (g.labelled, s)));
    stats.map(|(labelled, s)| (labelled as f64, s.mean, s.std.unwrap_or(0.0))).collect()
}

type DrawResult = std::result::Result<(), DrawingAreaErrorKind<std::io::Error>>;
type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

fn draw_curves(root: &Area, records: &[RoundRecord], arms: &[String], title: &str) -> DrawResult {
    root.fill(&WHITE)?;
    let body = root.titled(title, ("sans-serif", 20))?;
    let (left, right) = body.split_horizontally(450);
    let panels = [(&left, "accuracy", ACCURACY), (&right, "ECE (15 bins)", ECE)];
    for (index, (area, name, metric)) in panels.into_iter().enumerate() {
        let curves: Vec<Curve> = arms.iter().map(|arm| curve(records, arm, metric)).collect();
        draw_panel(area, name, arms, &curves, index == 0)?;
    }
    Ok(())
}

fn draw_panel(area: &Area, name: &str, arms: &[String], curves: &[Curve], legend: bool) -> DrawResult {
    let points = || curves.iter().flatten();
    let (x_range, y_range) = (padded(points().map(|p| p.0)), padded(points().flat_map(|p| [p.1 - p.2, p.1 + p.2])));
    let mut chart = ChartBuilder::on(area)
        .caption(name, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(x_range, y_range)?;
    chart
        .configure_mesh()
        .x_desc("labelled images")
        .y_desc(name)
        .light_line_style(BLACK.mix(0.04))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.3}"))
        .draw()?;
    for (index, (arm, curve)) in arms.iter().zip(curves).enumerate() {
        let colour = arm_colour(index);
        let band: Vec<(f64, f64)> =
            curve.iter().map(|p| (p.0, p.1 + p.2)).chain(curve.iter().rev().map(|p| (p.0, p.1 - p.2))).collect();
        chart.draw_series([Polygon::new(band, colour.mix(0.2).filled())])?;
        chart.draw_series(curve.iter().map(|p| Circle::new((p.0, p.1), 3, colour.filled())))?;
        chart
            .draw_series(LineSeries::new(curve.iter().map(|p| (p.0, p.1)), colour.stroke_width(2)))?
            .label(arm.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2)));
    }
    if legend {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    Ok(())
}

/// The values' span with 5% room on each side, so markers and bands are not cut at the frame; 0..1 when empty.
fn padded(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return 0.0..1.0;
    }
    let pad = if hi > lo { (hi - lo) * 0.05 } else { lo.abs().max(1.0) * 0.05 };
    lo - pad..hi + pad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(arm: &str, seed: u64, round: usize, accuracy: f64, ece: f64) -> RoundRecord {
        let metrics =
            Metrics { samples: 100, accuracy, ece, nll: 1.0, brier: 0.5, error_auroc: (round > 0).then_some(0.75) };
        RoundRecord {
            arm: arm.into(),
            seed,
            round,
            labelled: 100 * (round + 1),
            metrics,
            train_s: 1.23456,
            select_s: 0.5,
        }
    }

    /// 2 arms × 2 seeds × 3 rounds, given in scrambled order; accuracy 0.5 + 0.1·round + 0.2·seed (+0.05 for
    /// "entropy"), ECE 0.1 − 0.02·round.
    fn records() -> Vec<RoundRecord> {
        let mut records = vec![];
        for round in (0..3).rev() {
            for arm in ["entropy", "random"] {
                for seed in [1, 0] {
                    let bonus = if arm == "entropy" { 0.05 } else { 0.0 };
                    let accuracy = 0.5 + 0.1 * round as f64 + 0.2 * seed as f64 + bonus;
                    records.push(record(arm, seed, round, accuracy, 0.1 - 0.02 * round as f64));
                }
            }
        }
        records.push(record("not-in-config", 0, 0, 0.9, 0.1));
        records
    }

    fn arms() -> Vec<String> {
        vec!["random".into(), "entropy".into()]
    }

    #[test]
    fn metrics_csv_orders_rows_by_arm_then_seed_then_round() {
        let csv = metrics_csv(&records(), &arms());
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "round,seed,strategy,n_labeled,accuracy,ece,nll,brier,auroc");
        assert_eq!(lines.len(), 1 + 12, "the arm missing from `arms` is left out");
        let keys: Vec<(String, String, String)> = lines[1..]
            .iter()
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (f[2].to_string(), f[1].to_string(), f[0].to_string())
            })
            .collect();
        assert_eq!(keys[0], ("random".into(), "0".into(), "0".into()));
        assert_eq!(keys[2], ("random".into(), "0".into(), "2".into()));
        assert_eq!(keys[3], ("random".into(), "1".into(), "0".into()));
        assert_eq!(keys[6], ("entropy".into(), "0".into(), "0".into()));
        let row: Vec<&str> = lines[4].split(',').collect();
        assert_eq!(row[3], "100");
        assert!((row[4].parse::<f64>().unwrap() - 0.7).abs() < 1e-12);
        assert_eq!(row[8], "", "round 0 has no error AUROC");
        assert_eq!(lines[5].split(',').nth(8), Some("0.75"));
    }

    #[test]
    fn csv_quotes_arm_names_with_commas() {
        let csv = metrics_csv(&[record("a,\"b\"", 0, 0, 0.5, 0.1)], &["a,\"b\"".into()]);
        assert!(csv.lines().nth(1).unwrap().starts_with("0,0,\"a,\"\"b\"\"\",100,"), "{csv}");
    }

    #[test]
    fn timings_csv_prints_seconds_with_three_decimals() {
        let csv = timings_csv(&records(), &arms());
        assert_eq!(csv.lines().next(), Some("round,seed,strategy,train_s,select_s"));
        assert_eq!(csv.lines().nth(1), Some("0,0,random,1.235,0.500"));
        assert_eq!(csv.lines().count(), 13);
    }

    #[test]
    fn summary_reports_mean_and_sample_std_of_last_round() {
        let md = summary_md(&records(), &arms(), "Run");
        assert!(md.starts_with("# Run\n"));
        // random, round 2: accuracies 0.7 and 0.9 → 0.8 ± 0.1414; ECE 0.06 for both → ± 0.
        assert!(md.contains("| random | 300 | 2 | 0.8000 ± 0.1414 | 0.0600 ± 0.0000 |"), "{md}");
        assert!(md.contains("| entropy | 300 | 2 | 0.8500 ± 0.1414 |"), "{md}");
        // Accuracy by round, round 0: random 0.5, 0.7 → 0.6000 ± 0.1414.
        assert!(md.contains("| 100 (0) | 0.6000 ± 0.1414 | 0.6500 ± 0.1414 |"), "{md}");
        let random = md.find("| random |").unwrap();
        assert!(random < md.find("| entropy |").unwrap(), "arms in `arms` order");
    }

    #[test]
    fn summary_uses_last_round_all_seeds_completed_and_dashes_for_missing() {
        let mut records: Vec<_> =
            records().into_iter().filter(|r| !(r.arm == "random" && r.seed == 1 && r.round == 2)).collect();
        records.push(record("solo", 0, 0, 0.4, 0.2));
        let arms = vec!["random".into(), "solo".into(), "absent".into()];
        let md = summary_md(&records, &arms, "Partial");
        assert!(md.contains("| random | 200 | 2 | 0.7000 ± 0.1414 |"), "{md}");
        assert!(md.contains("| solo | 100 | 1 | 0.4000 | 0.2000 | 1.0000 | 0.5000 | — |"), "{md}");
        assert!(md.contains("| absent | — | 0 | — | — | — | — | — |"), "{md}");
        assert!(md.contains("| 300 (2) | 0.7000 | — | — |"), "{md}");
    }

    #[test]
    fn curves_svg_is_deterministic_standalone_svg_with_escaped_names() {
        let mut records = records();
        records.push(record("a<b&c", 0, 0, 0.3, 0.2));
        records.push(record("a<b&c", 0, 1, 0.4, 0.1));
        let arms = vec!["random".into(), "entropy".into(), "a<b&c".into()];
        let svg = curves_svg(&records, &arms, "CIFAR <10> & co");
        assert!(svg.starts_with("<svg"), "{}", &svg[..100]);
        assert!(svg.trim_end().ends_with("</svg>"));
        for text in
            ["random", "entropy", "a&lt;b&amp;c", "CIFAR &lt;10&gt; &amp; co", "labelled images", "ECE (15 bins)"]
        {
            assert!(svg.contains(text), "missing {text}");
        }
        assert!(!svg.contains("a<b&c"));
        assert!(svg.contains(">\n300\n</text>"), "x ticks are labelled with numbers");
        assert_eq!(svg, curves_svg(&records, &arms, "CIFAR <10> & co"));
    }

    #[test]
    fn curves_svg_draws_empty_and_single_point_runs() {
        assert!(curves_svg(&[], &arms(), "empty").ends_with("</svg>\n"));
        assert!(curves_svg(&[record("random", 0, 0, 0.5, 0.1)], &arms(), "one").contains("random"));
    }

    #[test]
    fn write_reports_creates_the_four_files() {
        let dir = tempfile::tempdir().unwrap();
        write_reports(dir.path(), &records(), &arms(), "Run").unwrap();
        for name in ["metrics.csv", "timings.csv", "summary.md", "curves.svg"] {
            let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
            assert!(!text.is_empty(), "{name} is empty");
        }
        assert!(!dir.path().join("curves.svg.partial").exists());
    }
}

//! Progress reporting for long loops: an `indicatif` bar when stderr is a terminal, otherwise JSON lines
//! `{"event":"progress","done":N,"total":M}` on stderr (at most ~100 lines per run, plus the last one), so
//! logs and supervising programs can follow along.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    total: u64,
    done: u64,
    label: String,
    sink: Sink,
}

enum Sink {
    Bar(ProgressBar),
    Json { last_reported: Option<u64>, step: u64 },
}

impl Progress {
    /// A bar or JSON reporter, chosen by whether stderr is a terminal.
    pub fn new(total: usize, label: &str) -> Progress {
        if std::io::stderr().is_terminal() {
            Self::bar(total, label)
        } else {
            Self::json(total, label)
        }
    }

    /// Always JSON lines (tests, pipes).
    pub fn json(total: usize, label: &str) -> Progress {
        let total = total as u64;
        let step = (total / 100).max(1);
        Progress { total, done: 0, label: label.to_string(), sink: Sink::Json { last_reported: None, step } }
    }

    fn bar(total: usize, label: &str) -> Progress {
        let bar = ProgressBar::new(total as u64);
        let style = ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_message(label.to_string());
        Progress { total: total as u64, done: 0, label: label.to_string(), sink: Sink::Bar(bar) }
    }

    pub fn done(&self) -> usize {
        self.done as usize
    }

    pub fn total(&self) -> usize {
        self.total as usize
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// `n` more items done.
    pub fn inc(&mut self, n: usize) {
        self.done += n as u64;
        match &mut self.sink {
            Sink::Bar(bar) => bar.inc(n as u64),
            Sink::Json { last_reported, step } => {
                let due = last_reported.is_none_or(|l| self.done >= l + *step);
                if due && self.done < self.total {
                    *last_reported = Some(self.done);
                    emit_json(self.done, self.total);
                }
            }
        }
    }

    /// Final report (the bar is cleared-and-kept; JSON prints the last line once).
    pub fn finish(&mut self) {
        match &mut self.sink {
            Sink::Bar(bar) => bar.finish(),
            Sink::Json { last_reported, .. } => {
                if *last_reported != Some(self.done) {
                    *last_reported = Some(self.done);
                    emit_json(self.done, self.total);
                }
            }
        }
    }
}

/// Format of one JSON progress line (no trailing newline).
pub fn json_line(done: u64, total: u64) -> String {
    format!("{{\"event\":\"progress\",\"done\":{done},\"total\":{total}}}")
}

fn emit_json(done: u64, total: u64) {
    // eprintln! (not a raw stderr handle) so test harnesses capture it
    eprintln!("{}", json_line(done, total));
}

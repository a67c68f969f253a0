//! Progress of long commands (`vulndb import`, `gc`) on stderr.
//!
//! On a terminal: an indicatif bar (position, total, rate, ETA) redrawn in
//! place. Otherwise (a log file, a pipe, CI): a plain line every
//! `KURA_PROGRESS_EVERY` (default 10s, humantime) and one when the work is
//! done, e.g.
//!
//! ```text
//! vulndb import: 120/3400 files (3%), 52113 advisories, 14s elapsed, ETA 6m22s
//! ```
//!
//! The ETA is the elapsed time scaled by what is left; it is shown only when
//! the total is known and some work is done. stdout is left alone (reports
//! and `--output json` go there).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    label: String,
    unit: String,
    mode: Mode,
}

enum Mode {
    Bar(ProgressBar),
    Lines(Mutex<Lines>),
}

struct Lines {
    every: Duration,
    started: Instant,
    last: Instant,
    pos: u64,
    total: Option<u64>,
    message: String,
}

impl Progress {
    /// A reporter for `label` (e.g. "vulndb import") counting `unit`s (e.g. "files").
    pub fn new(label: &str, unit: &str) -> Progress {
        let mode = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(&format!(
                    "{{prefix}} [{{elapsed_precise}}] [{{bar:30}}] {{pos}}/{{len}} {unit} ({{percent}}%) {{msg}} ETA {{eta}}"
                ))
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(label.to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
            Mode::Bar(bar)
        } else {
            let every = std::env::var("KURA_PROGRESS_EVERY")
                .ok()
                .and_then(|v| humantime::parse_duration(&v).ok())
                .unwrap_or(Duration::from_secs(10));
            let now = Instant::now();
            Mode::Lines(Mutex::new(Lines {
                every,
                started: now,
                last: now,
                pos: 0,
                total: None,
                message: String::new(),
            }))
        };
        Progress {
            label: label.to_string(),
            unit: unit.to_string(),
            mode,
        }
    }

    /// Where the work stands: `pos` of `total` units, and a short note
    /// (e.g. "52113 advisories").
    pub fn update(&self, pos: u64, total: Option<u64>, message: &str) {
        match &self.mode {
            Mode::Bar(bar) => {
                if let Some(t) = total {
                    bar.set_length(t);
                }
                bar.set_position(pos);
                bar.set_message(message.to_string());
            }
            Mode::Lines(lines) => {
                let mut l = lines.lock().unwrap_or_else(|p| p.into_inner());
                l.pos = pos;
                if total.is_some() {
                    l.total = total;
                }
                l.message = message.to_string();
                if l.last.elapsed() >= l.every {
                    l.last = Instant::now();
                    eprintln!("{}", self.line(&l, None));
                }
            }
        }
    }

    /// The work is done (`ok`: all of it; else it stopped on an error): the
    /// bar's last state, or a last line ending in "done" or "stopped".
    pub fn finish(&self, ok: bool) {
        match &self.mode {
            Mode::Bar(bar) if ok => {
                if let Some(t) = bar.length() {
                    bar.set_position(t);
                }
                bar.finish()
            }
            Mode::Bar(bar) => bar.abandon(),
            Mode::Lines(lines) => {
                let mut l = lines.lock().unwrap_or_else(|p| p.into_inner());
                if ok {
                    l.pos = l.total.unwrap_or(l.pos).max(l.pos);
                }
                eprintln!("{}", self.line(&l, Some(ok)));
            }
        }
    }

    /// A progress line; `finished`: Some(true) done, Some(false) stopped.
    fn line(&self, l: &Lines, finished: Option<bool>) -> String {
        let elapsed = l.started.elapsed();
        let mut s = format!("{}: ", self.label);
        match l.total {
            Some(t) if t > 0 => s.push_str(&format!("{}/{} {} ({}%)", l.pos, t, self.unit, l.pos.min(t) * 100 / t)),
            _ => s.push_str(&format!("{} {}", l.pos, self.unit)),
        }
        if !l.message.is_empty() {
            s.push_str(", ");
            s.push_str(&l.message);
        }
        s.push_str(&format!(", {} elapsed", short(elapsed)));
        match finished {
            Some(true) => s.push_str(", done"),
            Some(false) => s.push_str(", stopped"),
            None => {
                if let Some(eta) = eta(elapsed, l.pos, l.total) {
                    s.push_str(&format!(", ETA {}", short(eta)));
                }
            }
        }
        s
    }
}

/// The time left if the rest goes at the rate so far.
pub fn eta(elapsed: Duration, pos: u64, total: Option<u64>) -> Option<Duration> {
    let total = total?;
    if pos == 0 || pos > total {
        return None;
    }
    Some(elapsed.mul_f64((total - pos) as f64 / pos as f64))
}

/// A duration in whole seconds, humantime style (`6m 22s` as `6m22s`).
fn short(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs()))
        .to_string()
        .replace(' ', "")
}

/// GC options whose progress goes to a [`Progress`] ("gc: step 5/6 …").
pub fn gc(opts: kura_gc::GcOptions) -> (std::sync::Arc<Progress>, kura_gc::GcOptions) {
    let progress = std::sync::Arc::new(Progress::new("gc", "steps"));
    let p = progress.clone();
    let opts = kura_gc::GcOptions {
        progress: kura_gc::GcProgress::new(move |s: kura_gc::GcStep| {
            // Steps done so far, and what the current one has looked at.
            p.update(
                u64::from(s.step - 1),
                Some(u64::from(s.steps)),
                &format!("step {}: {}, {} looked at", s.step, s.name, s.items),
            )
        }),
        ..opts
    };
    (progress, opts)
}

/// `kura vulndb import` with progress (documents of the input, advisories).
pub async fn vulndb_import(
    scans: &dyn kura_store::ScanStore,
    path: &std::path::Path,
    out: crate::cli::Output,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let progress = std::sync::Arc::new(Progress::new("vulndb import", "documents"));
    let p = progress.clone();
    let report = std::sync::Arc::new(move |s: kura_ecr::scanning::VulnImportProgress| {
        p.update(
            s.documents_done,
            Some(s.documents_total),
            &format!("{} advisories", s.advisories),
        )
    });
    let row = kura_ecr::scanning::import_vulndb_with_progress(scans, path, report).await;
    progress.finish(row.is_ok());
    let row = row.with_context(|| format!("importing {}", path.display()))?;
    crate::cli::output::report(out, &vuln_import_json(&row))
}

/// One completed import as `vulndb import` and `vulndb list` print it.
pub fn vuln_import_json(row: &kura_store::scan::VulnImportRow) -> serde_json::Value {
    serde_json::json!({
        "id": row.id,
        "origin": row.origin,
        "completedAt": row.completed_at,
        "kinds": row.kinds,
        "records": row.records,
        "advisories": row.advisories,
        "ecosystems": serde_json::from_str::<serde_json::Value>(&row.ecosystems).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_scales_elapsed_by_what_is_left() {
        assert_eq!(
            eta(Duration::from_secs(10), 25, Some(100)),
            Some(Duration::from_secs(30))
        );
        assert_eq!(eta(Duration::from_secs(10), 0, Some(100)), None);
        assert_eq!(eta(Duration::from_secs(10), 5, None), None);
        assert_eq!(eta(Duration::from_secs(10), 100, Some(100)), Some(Duration::ZERO));
        assert_eq!(short(Duration::from_millis(382_700)), "6m22s");
    }
}

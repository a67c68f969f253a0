//! Progress of `kura backup`, `kura restore` and `kura migrate` on stderr:
//! one plain line at most every second (and one at the end of each phase),
//! with items and bytes done, the rate and an estimate of the time left.
//! Plain lines, not a redrawn bar, so a log file or CI output stays readable.

use std::io::Write;
use std::time::{Duration, Instant};

/// How often a line is printed at most.
const EVERY: Duration = Duration::from_secs(1);

/// One phase's counters (e.g. "copying blobs").
pub struct Progress {
    label: String,
    total_items: u64,
    total_bytes: u64,
    items: u64,
    bytes: u64,
    start: Instant,
    last: Option<Instant>,
    quiet: bool,
}

impl Progress {
    /// A phase of `total_items` items holding `total_bytes` bytes.
    pub fn new(label: &str, total_items: u64, total_bytes: u64, quiet: bool) -> Self {
        Progress {
            label: label.to_string(),
            total_items,
            total_bytes,
            items: 0,
            bytes: 0,
            start: Instant::now(),
            last: None,
            quiet,
        }
    }

    /// `items` more items and `bytes` more bytes are done.
    pub fn add(&mut self, items: u64, bytes: u64) {
        self.items += items;
        self.bytes += bytes;
        let now = Instant::now();
        if self.last.is_none_or(|l| now.duration_since(l) >= EVERY) {
            self.last = Some(now);
            self.print(false);
        }
    }

    /// The phase is over: print its final line.
    pub fn finish(&mut self) {
        self.print(true);
    }

    fn print(&self, last: bool) {
        if self.quiet {
            return;
        }
        let line = self.line(last);
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{line}");
    }

    fn line(&self, last: bool) -> String {
        let secs = self.start.elapsed().as_secs_f64().max(0.001);
        let mut s = format!("{}: {}/{}", self.label, self.items, self.total_items);
        if self.total_items > 0 {
            s.push_str(&format!(
                " ({:.0}%)",
                100.0 * self.items as f64 / self.total_items as f64
            ));
        }
        if self.total_bytes > 0 || self.bytes > 0 {
            s.push_str(&format!(
                ", {} of {}, {}/s",
                mib(self.bytes),
                mib(self.total_bytes),
                mib((self.bytes as f64 / secs) as u64)
            ));
        }
        if last {
            s.push_str(&format!(", done in {:.1}s", secs));
        } else if let Some(eta) = self.eta(secs) {
            s.push_str(&format!(", ETA {}", humantime::format_duration(eta)));
        }
        s
    }

    /// Time left, from the bytes rate when bytes are counted, else the items rate.
    fn eta(&self, secs: f64) -> Option<Duration> {
        let (done, total) = if self.total_bytes > 0 {
            (self.bytes, self.total_bytes)
        } else {
            (self.items, self.total_items)
        };
        if done == 0 || total <= done {
            return None;
        }
        let left = (total - done) as f64 * secs / done as f64;
        Some(Duration::from_secs(left.ceil() as u64))
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// A line about the run (not a counter), e.g. "waiting for GC to finish".
pub fn note(quiet: bool, msg: &str) {
    if !quiet {
        let _ = writeln!(std::io::stderr().lock(), "{msg}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_shows_counts_and_an_eta_once_something_is_done() {
        let mut p = Progress::new("blobs", 4, 4 << 20, true);
        assert_eq!(p.eta(1.0), None);
        p.add(1, 1 << 20);
        let line = p.line(false);
        assert!(line.starts_with("blobs: 1/4 (25%), 1.0 MiB of 4.0 MiB"), "{line}");
        // 1 MiB took 1 s: 3 MiB left take 3 s.
        assert_eq!(p.eta(1.0), Some(Duration::from_secs(3)));
        p.add(3, 3 << 20);
        assert_eq!(p.eta(1.0), None);
        assert!(p.line(true).contains("done in"));
    }
}

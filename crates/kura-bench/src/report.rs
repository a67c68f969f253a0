//! The results as one Markdown table: each figure for Kura and the reference,
//! their ratio, the target and whether it was met.

use std::fmt::Write as _;

#[derive(Clone, Copy, Debug)]
pub enum Target {
    None,
    /// Kura / reference must be at least this.
    RatioAtLeast(f64),
    /// Kura / reference must be at most this.
    RatioAtMost(f64),
    /// Kura's figure must be at most this.
    KuraAtMost(f64),
}

impl Target {
    fn describe(&self, unit: &str) -> String {
        match *self {
            Target::None => "—".into(),
            Target::RatioAtLeast(x) => format!("ratio ≥ {}", num(x)),
            Target::RatioAtMost(x) => format!("ratio ≤ {}", num(x)),
            Target::KuraAtMost(x) => format!("Kura ≤ {} {unit}", num(x)),
        }
    }

    fn met(&self, kura: Option<f64>, ratio: Option<f64>) -> &'static str {
        let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
        match (*self, kura, ratio) {
            (Target::None, _, _) => "",
            (Target::RatioAtLeast(x), _, Some(r)) if r.is_finite() => verdict(r >= x),
            (Target::RatioAtMost(x), _, Some(r)) if r.is_finite() => verdict(r <= x),
            (Target::KuraAtMost(x), Some(k), _) if k.is_finite() => verdict(k <= x),
            _ => "n/a",
        }
    }
}

pub struct Row {
    pub metric: String,
    pub unit: String,
    pub kura: Option<f64>,
    pub reference: Option<f64>,
    pub target: Target,
    /// Per-round values, for the details list.
    pub kura_rounds: Vec<f64>,
    pub reference_rounds: Vec<f64>,
}

enum Line {
    Section(String),
    Row(Row),
}

#[derive(Default)]
pub struct Report {
    lines: Vec<Line>,
    pub header: Vec<String>,
    pub limits: Vec<String>,
    pub notes: Vec<String>,
}

/// A number with as many decimals as its size deserves.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else if a >= 0.01 {
        format!("{v:.3}")
    } else if a == 0.0 {
        "0".into()
    } else {
        format!("{v:.2e}")
    }
}

pub fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}

impl Report {
    pub fn section(&mut self, title: &str) {
        self.lines.push(Line::Section(title.to_string()));
    }

    /// A row whose figures are the medians of per-round values.
    pub fn rounds(&mut self, metric: &str, unit: &str, kura: Vec<f64>, reference: Vec<f64>, target: Target) {
        let k = (!kura.is_empty()).then(|| median(&kura));
        let r = (!reference.is_empty()).then(|| median(&reference));
        self.lines.push(Line::Row(Row {
            metric: metric.into(),
            unit: unit.into(),
            kura: k,
            reference: r,
            target,
            kura_rounds: if kura.len() > 1 { kura } else { vec![] },
            reference_rounds: if reference.len() > 1 { reference } else { vec![] },
        }));
    }

    pub fn row(&mut self, metric: &str, unit: &str, kura: Option<f64>, reference: Option<f64>, target: Target) {
        self.lines.push(Line::Row(Row {
            metric: metric.into(),
            unit: unit.into(),
            kura,
            reference,
            target,
            kura_rounds: vec![],
            reference_rounds: vec![],
        }));
    }

    pub fn rows(&self) -> impl Iterator<Item = &Row> {
        self.lines.iter().filter_map(|l| match l {
            Line::Row(r) => Some(r),
            Line::Section(_) => None,
        })
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        for h in &self.header {
            let _ = writeln!(out, "{h}");
        }
        out.push('\n');
        out.push_str("| metric | unit | Kura | reference | Kura / ref | target | |\n");
        out.push_str("|---|---|--:|--:|--:|---|---|\n");
        for line in &self.lines {
            match line {
                Line::Section(t) => {
                    let _ = writeln!(out, "| **{t}** | | | | | | |");
                }
                Line::Row(r) => {
                    let ratio = match (r.kura, r.reference) {
                        (Some(k), Some(f)) if f != 0.0 => Some(k / f),
                        _ => None,
                    };
                    let cell = |v: Option<f64>| v.map(num).unwrap_or_else(|| "—".into());
                    let _ = writeln!(
                        out,
                        "| {} | {} | {} | {} | {} | {} | {} |",
                        r.metric,
                        r.unit,
                        cell(r.kura),
                        cell(r.reference),
                        ratio.map(|x| format!("{}×", num(x))).unwrap_or_else(|| "—".into()),
                        r.target.describe(&r.unit),
                        r.target.met(r.kura, ratio),
                    );
                }
            }
        }
        if !self.limits.is_empty() {
            out.push_str("\nWhat the machine itself allows (same run):\n\n");
            for l in &self.limits {
                let _ = writeln!(out, "- {l}");
            }
        }
        let rounds: Vec<&Row> = self
            .rows()
            .filter(|r| !r.kura_rounds.is_empty() || !r.reference_rounds.is_empty())
            .collect();
        if !rounds.is_empty() {
            out.push_str("\nPer-round values (the table shows their median):\n\n");
            for r in rounds {
                let list = |v: &[f64]| v.iter().map(|x| num(*x)).collect::<Vec<_>>().join(", ");
                let _ = writeln!(
                    out,
                    "- {} ({}): Kura {}; reference {}",
                    r.metric,
                    r.unit,
                    list(&r.kura_rounds),
                    list(&r.reference_rounds)
                );
            }
        }
        if !self.notes.is_empty() {
            out.push_str("\nNotes:\n\n");
            for n in &self.notes {
                let _ = writeln!(out, "- {n}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_and_numbers() {
        assert_eq!(Target::RatioAtLeast(1.5).met(None, Some(1.6)), "met");
        assert_eq!(Target::RatioAtLeast(1.5).met(None, Some(1.4)), "**missed**");
        assert_eq!(Target::KuraAtMost(64.0).met(Some(70.0), None), "**missed**");
        assert_eq!(Target::RatioAtMost(2.0).met(None, None), "n/a");
        assert_eq!(num(1234.5), "1234");
        assert_eq!(num(12.34), "12.3");
        assert_eq!(num(0.1234), "0.123");
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}

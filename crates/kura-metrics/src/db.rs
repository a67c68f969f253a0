//! Database latency without touching every call site: sqlx reports each
//! statement it ran as a `sqlx::query` tracing event (at DEBUG, with the
//! statement's first words and `elapsed_secs`). [`QueryTimes`] is a tracing
//! layer that turns those events into the histogram
//! `kura_database_query_duration_seconds{statement}`, the statement label
//! being only its verb (select, insert, update, delete, other). Installed
//! with its own filter, it receives these events while the log output keeps
//! its own level (sqlx's are not printed unless `RUST_LOG` asks for them).

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Context, Layer};

use crate::names;

/// The layer (see the module's documentation).
pub struct QueryTimes;

/// [`QueryTimes`] with the filter that lets only sqlx's statement events through.
pub fn layer<S>() -> impl Layer<S>
where
    S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    QueryTimes.with_filter(Targets::new().with_target("sqlx::query", LevelFilter::DEBUG))
}

/// The bounded label of a statement from its first words.
pub fn statement_kind(summary: &str) -> &'static str {
    let verb = summary.split_whitespace().next().unwrap_or("");
    for (k, label) in [
        ("select", "select"),
        ("insert", "insert"),
        ("update", "update"),
        ("delete", "delete"),
        ("with", "select"),
    ] {
        if verb.eq_ignore_ascii_case(k) {
            return label;
        }
    }
    "other"
}

#[derive(Default)]
struct Fields {
    summary: Option<String>,
    elapsed: Option<f64>,
}

impl Visit for Fields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "elapsed_secs" {
            self.elapsed = Some(value);
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "summary" {
            self.summary = Some(value.to_string());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "summary" && self.summary.is_none() {
            self.summary = Some(format!("{value:?}").trim_matches('"').to_string());
        }
    }
}

impl<S: Subscriber> Layer<S> for QueryTimes {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != "sqlx::query" {
            return;
        }
        let mut f = Fields::default();
        event.record(&mut f);
        if let Some(secs) = f.elapsed {
            let kind = statement_kind(f.summary.as_deref().unwrap_or(""));
            metrics::histogram!(names::DB_DURATION, "statement" => kind).record(secs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_kinds_are_bounded() {
        assert_eq!(statement_kind("SELECT id, kind FROM"), "select");
        assert_eq!(statement_kind("insert into jobs (kind"), "insert");
        assert_eq!(statement_kind("UPDATE jobs SET state"), "update");
        assert_eq!(statement_kind("DELETE FROM uploads WHERE"), "delete");
        assert_eq!(statement_kind("WITH x AS (SELECT"), "select");
        assert_eq!(statement_kind("PRAGMA optimize"), "other");
        assert_eq!(statement_kind(""), "other");
    }
}

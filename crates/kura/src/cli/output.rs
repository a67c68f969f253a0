//! `--output json|table` for the commands that print reports (`gc`, `usage`,
//! `jobs list`, `lifecycle run`, `vulndb import`, `vulndb list`).
//!
//! `json` (the default) is for scripts: a report is one JSON document, a list
//! is one JSON object per line (what `jq` reads as a stream). `table` is for
//! people: a report is a FIELD/VALUE table (nested fields dotted,
//! `standard.images`), a list is one row per item with a column per field.
//! Both are built from the same JSON value, so they never disagree.

use std::io::Write;

use serde::Serialize;
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Json,
    Table,
}

#[derive(clap::Args, Clone, Copy, Debug)]
pub struct OutputArgs {
    /// How to print the result: json (one document; lists one object per
    /// line) or table.
    #[arg(long, env = "KURA_OUTPUT", value_enum, default_value_t = Output::Json)]
    pub output: Output,
}

/// Print one report.
pub fn report(out: Output, value: &impl Serialize) -> anyhow::Result<()> {
    let value = serde_json::to_value(value)?;
    let text = match out {
        Output::Json => serde_json::to_string_pretty(&value)? + "\n",
        Output::Table => {
            let mut rows = Vec::new();
            flatten("", &value, &mut rows);
            render(
                &["FIELD".to_string(), "VALUE".to_string()],
                &rows.into_iter().map(|(k, v)| vec![k, v]).collect::<Vec<_>>(),
            )
        }
    };
    write_stdout(&text)
}

/// Print a list of items; a table shows `columns` (dotted paths) in that
/// order, or every field when `columns` is empty.
pub fn list(out: Output, items: &[Value], columns: &[&str]) -> anyhow::Result<()> {
    let text = match out {
        Output::Json => {
            let mut s = String::new();
            for item in items {
                s.push_str(&serde_json::to_string(item)?);
                s.push('\n');
            }
            s
        }
        Output::Table => table(items, columns),
    };
    write_stdout(&text)
}

fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|_| stdout.flush()) {
        // `kura jobs list | head` closes the pipe early: not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// The list as a table: the given columns, or the items' (flattened)
/// fields in the order they first appear.
fn table(items: &[Value], wanted: &[&str]) -> String {
    let mut columns: Vec<String> = wanted.iter().map(|c| c.to_string()).collect();
    let mut rows: Vec<Vec<(String, String)>> = Vec::new();
    for item in items {
        let mut fields = Vec::new();
        flatten("", item, &mut fields);
        if wanted.is_empty() {
            for (k, _) in &fields {
                if !columns.contains(k) {
                    columns.push(k.clone());
                }
            }
        }
        rows.push(fields);
    }
    let cells: Vec<Vec<String>> = rows
        .into_iter()
        .map(|fields| {
            columns
                .iter()
                .map(|c| {
                    fields
                        .iter()
                        .find(|(k, _)| k == c)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                })
                .collect()
        })
        .collect();
    let header: Vec<String> = columns.iter().map(|c| c.to_uppercase()).collect();
    render(&header, &cells)
}

/// (dotted path, text) for every leaf of a JSON value.
fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        _ => out.push((prefix.to_string(), cell(value))),
    }
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.replace(['\n', '\t'], " "),
        Value::Array(items) if items.iter().all(|v| !v.is_object() && !v.is_array()) => {
            items.iter().map(cell).collect::<Vec<_>>().join(",")
        }
        Value::Object(m) if m.is_empty() => "-".into(),
        other => other.to_string(),
    }
}

/// Left-aligned columns two spaces apart; no trailing spaces.
fn render(header: &[String], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, c) in row.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut s = String::new();
    for row in std::iter::once(header).chain(rows.iter().map(|r| r.as_slice())) {
        let mut line = String::new();
        for (i, c) in row.iter().enumerate() {
            if i + 1 < row.len() {
                line.push_str(&format!("{c:<w$}  ", w = widths[i]));
            } else {
                line.push_str(c);
            }
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn report_table_flattens_nested_fields() {
        let mut rows = Vec::new();
        flatten(
            "",
            &json!({"account": null, "standard": {"images": 2, "bytes": 10}}),
            &mut rows,
        );
        assert_eq!(
            rows,
            vec![
                ("account".to_string(), "-".to_string()),
                ("standard.bytes".to_string(), "10".to_string()),
                ("standard.images".to_string(), "2".to_string()),
            ]
        );
    }

    #[test]
    fn list_table_has_a_column_per_field() {
        let items = [
            json!({"id": 1, "kind": "gc"}),
            json!({"id": 22, "kind": "scan", "error": "x y"}),
        ];
        let t = table(&items, &[]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines, vec!["ID  KIND  ERROR", "1   gc", "22  scan  x y"]);
        let t = table(&items, &["kind", "id"]);
        assert_eq!(t.lines().collect::<Vec<_>>(), vec!["KIND  ID", "gc    1", "scan  22"]);
    }
}

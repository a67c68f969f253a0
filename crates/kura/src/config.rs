//! `kura.toml`: the configuration file, read when `--config PATH` or
//! `KURA_CONFIG` names one (no default path is read).
//!
//! The file's keys are the long flag names, generically over clap's
//! [`Command`] tree, so every flag any module adds is a key without edits
//! here: top-level keys are `kura serve`'s flags (and apply as well to every
//! other command that has a flag of that name, e.g. `data-dir` for `kura gc`);
//! a table named after a command (`[gc]`, `[jobs.list]`) holds that command's
//! own flags and overrides the top-level values there.
//!
//! A file value becomes the flag's default before the command line is parsed,
//! so clap's own precedence gives flags > environment > file > built-in
//! defaults. Every value is checked with the flag's own value parser first:
//! an unknown key or a value of the wrong type is an error naming the key.

use std::any::TypeId;
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, ArgMatches, Command};
use toml_edit::{Item, Table, Value};

/// The command whose flags are the file's top-level keys.
pub const TOP_LEVEL_COMMAND: &str = "serve";

/// Commands the file does not configure (the file's own tooling, clap's help).
const SKIPPED_COMMANDS: &[&str] = &["config", "help"];

/// Flags that are never keys.
const SKIPPED_ARGS: &[&str] = &["config", "help", "version"];

/// `kura config …`.
#[derive(clap::Subcommand)]
pub enum ConfigCommand {
    /// Print the reference of every configuration key (flag, environment
    /// variable, key, default, description) as Markdown: docs/CONFIG.md.
    Reference,
    /// Check the configuration file (`--config` / KURA_CONFIG) and the
    /// environment as `kura serve` would read them, then print each serve
    /// setting with where its value comes from (env, file, default).
    Check,
}

/// A configuration problem, shown as `error: <path>: <message>`.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// One value the file supplies: the command path (empty: the root), the
/// flag's id, its values as strings.
#[derive(Debug, Clone, PartialEq)]
pub struct Supplied {
    pub command: Vec<String>,
    pub arg: String,
    pub values: Vec<String>,
}

/// Parses the process's command line with the configuration file's values
/// as defaults. A configuration error prints a message and exits with 2
/// (as clap does for a usage error).
pub fn parse<T: clap::Parser>() -> T {
    let args: Vec<OsString> = std::env::args_os().collect();
    let env_path = std::env::var_os("KURA_CONFIG").filter(|v| !v.is_empty());
    match try_parse::<T>(&args, env_path.as_deref()) {
        Ok(Ok(parsed)) => parsed,
        Ok(Err(clap_err)) => clap_err.exit(),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}

/// [`parse`] without exiting: the outer error is the configuration file's,
/// the inner one clap's.
pub fn try_parse<T: clap::Parser>(
    args: &[OsString],
    env_path: Option<&OsStr>,
) -> Result<Result<T, clap::Error>, ConfigError> {
    let mut cmd = T::command();
    if let Some(path) = config_path(args).or_else(|| env_path.map(PathBuf::from)) {
        let table = read_file(&path)?;
        let supplied = resolve(&cmd, &table).map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        cmd = apply(cmd, &supplied);
    }
    Ok(cmd
        .try_get_matches_from(args)
        .and_then(|mut m| T::from_arg_matches_mut(&mut m)))
}

/// The value of `--config PATH` / `--config=PATH` on the command line
/// (before a `--`), found before clap parses it.
pub fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut it = args.iter().skip(1);
    let mut found = None;
    while let Some(a) = it.next() {
        let Some(s) = a.to_str() else { continue };
        if s == "--" {
            break;
        }
        if s == "--config" {
            found = it.next().map(PathBuf::from);
        } else if let Some(v) = s.strip_prefix("--config=") {
            found = Some(PathBuf::from(v));
        }
    }
    found
}

/// Reads and parses a TOML file.
pub fn read_file(path: &Path) -> Result<Table, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("reading the configuration file {}: {e}", path.display())))?;
    parse_toml(&text).map_err(|e| ConfigError(format!("{}: {e}", path.display())))
}

/// Parses TOML text into its root table.
pub fn parse_toml(text: &str) -> Result<Table, String> {
    let doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| format!("not valid TOML: {}", e.to_string().trim_end()))?;
    Ok(doc.as_table().clone())
}

/// Checks every key of `root` against the command tree of `cmd` and returns
/// the values to supply, top-level keys first, then each command table's.
pub fn resolve(cmd: &Command, root: &Table) -> Result<Vec<Supplied>, String> {
    let top = cmd
        .find_subcommand(TOP_LEVEL_COMMAND)
        .ok_or_else(|| format!("no `{TOP_LEVEL_COMMAND}` command"))?;
    let mut out = Vec::new();
    // Top-level keys: serve's flags, applied to every command with that flag.
    for (key, item) in root.iter() {
        if is_table(item) {
            continue;
        }
        let Some(arg) = find_long(top, key) else {
            return Err(unknown_key(cmd, key, &[]));
        };
        let values = to_values(key, item, arg, top)?;
        let mut holders = Vec::new();
        commands_with_long(cmd, &mut Vec::new(), key, &mut holders);
        for (path, c) in holders {
            let arg = find_long(c, key).expect("found above");
            check_values(key, &values, arg, c)?;
            out.push(Supplied {
                command: path,
                arg: arg.get_id().to_string(),
                values: values.clone(),
            });
        }
    }
    // Command tables, outermost first so inner ones override.
    resolve_tables(cmd, root, &mut Vec::new(), &mut out)?;
    Ok(out)
}

fn resolve_tables(cmd: &Command, table: &Table, path: &mut Vec<String>, out: &mut Vec<Supplied>) -> Result<(), String> {
    for (key, item) in table.iter() {
        if !is_table(item) {
            if !path.is_empty() {
                let dotted = dotted(path, key);
                let arg = find_long(cmd, key).ok_or_else(|| unknown_key(cmd, &dotted, path))?;
                let values = to_values(&dotted, item, arg, cmd)?;
                out.push(Supplied {
                    command: path.clone(),
                    arg: arg.get_id().to_string(),
                    values,
                });
            }
            continue;
        }
        let dotted = dotted(path, key);
        let sub = cmd
            .get_subcommands()
            .find(|s| s.get_name() == key && !SKIPPED_COMMANDS.contains(&key))
            .ok_or_else(|| {
                let here = if path.is_empty() {
                    "kura".to_string()
                } else {
                    format!("kura {}", path.join(" "))
                };
                format!("unknown table [{dotted}]: `{here}` has no command `{key}`")
            })?;
        let inner = as_table(item).expect("is_table");
        path.push(key.to_string());
        resolve_tables(sub, &inner, path, out)?;
        path.pop();
    }
    Ok(())
}

fn dotted(path: &[String], key: &str) -> String {
    let mut s = path.join(".");
    if !s.is_empty() {
        s.push('.');
    }
    s.push_str(key);
    s
}

fn is_table(item: &Item) -> bool {
    matches!(item, Item::Table(_) | Item::Value(Value::InlineTable(_)))
}

fn as_table(item: &Item) -> Option<Table> {
    match item {
        Item::Table(t) => Some(t.clone()),
        Item::Value(Value::InlineTable(t)) => Some(t.clone().into_table()),
        _ => None,
    }
}

/// The keys of a command: its long flags, minus the skipped ones.
fn keys(cmd: &Command) -> impl Iterator<Item = &Arg> {
    cmd.get_arguments()
        .filter(|a| !a.is_positional() && a.get_long().is_some())
        .filter(|a| !SKIPPED_ARGS.contains(&a.get_id().as_str()))
        .filter(|a| {
            !matches!(
                a.get_action(),
                ArgAction::Help | ArgAction::HelpLong | ArgAction::HelpShort | ArgAction::Version
            )
        })
}

fn find_long<'a>(cmd: &'a Command, key: &str) -> Option<&'a Arg> {
    keys(cmd).find(|a| a.get_long() == Some(key))
}

/// Every command (any depth, the top-level one included) with a long flag `key`.
fn commands_with_long<'a>(
    cmd: &'a Command,
    path: &mut Vec<String>,
    key: &str,
    out: &mut Vec<(Vec<String>, &'a Command)>,
) {
    for sub in cmd.get_subcommands() {
        if SKIPPED_COMMANDS.contains(&sub.get_name()) {
            continue;
        }
        path.push(sub.get_name().to_string());
        if find_long(sub, key).is_some() {
            out.push((path.clone(), sub));
        }
        commands_with_long(sub, path, key, out);
        path.pop();
    }
}

fn unknown_key(root: &Command, key: &str, path: &[String]) -> String {
    let flag = key.rsplit('.').next().unwrap_or(key);
    let mut holders = Vec::new();
    commands_with_long(root, &mut Vec::new(), flag, &mut holders);
    let scope = if path.is_empty() {
        format!("a flag of `kura {TOP_LEVEL_COMMAND}`")
    } else {
        format!("a flag of `kura {}`", path.join(" "))
    };
    let mut msg = format!("unknown key `{key}`: not {scope}");
    if let Some((p, _)) = holders.first() {
        let _ = write!(
            msg,
            " (`--{flag}` is a flag of `kura {}`: put it under [{}])",
            p.join(" "),
            p.join(".")
        );
    }
    msg
}

fn is_bool(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse)
        || arg.get_value_parser().type_id() == TypeId::of::<bool>()
}

fn is_integer(arg: &Arg) -> bool {
    let t = arg.get_value_parser().type_id();
    [
        TypeId::of::<u8>(),
        TypeId::of::<u16>(),
        TypeId::of::<u32>(),
        TypeId::of::<u64>(),
        TypeId::of::<usize>(),
        TypeId::of::<i8>(),
        TypeId::of::<i16>(),
        TypeId::of::<i32>(),
        TypeId::of::<i64>(),
        TypeId::of::<isize>(),
    ]
    .iter()
    .any(|id| t == *id)
}

/// A flag whose value is text as given (a string or a path): only a TOML string fits.
fn is_text(arg: &Arg) -> bool {
    let t = arg.get_value_parser().type_id();
    [
        TypeId::of::<String>(),
        TypeId::of::<PathBuf>(),
        TypeId::of::<OsString>(),
    ]
    .iter()
    .any(|id| t == *id)
}

fn takes_many(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::Append) || arg.get_num_args().is_some_and(|r| r.max_values() > 1)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "an array",
        Value::InlineTable(_) => "a table",
    }
}

fn expected(arg: &Arg) -> &'static str {
    if is_bool(arg) {
        "a boolean (true or false)"
    } else if is_integer(arg) {
        "an integer"
    } else if is_text(arg) {
        "a string"
    } else {
        "a string or an integer"
    }
}

/// The TOML value as the strings clap would get on the command line, after
/// checking its type and running the flag's value parser on it.
fn to_values(key: &str, item: &Item, arg: &Arg, cmd: &Command) -> Result<Vec<String>, String> {
    let Item::Value(v) = item else {
        return Err(format!("`{key}`: expected {}, found a table", expected(arg)));
    };
    let values = match v {
        Value::Array(items) if takes_many(arg) => items
            .iter()
            .map(|x| scalar(key, x, arg))
            .collect::<Result<Vec<_>, _>>()?,
        Value::Array(_) => return Err(format!("`{key}`: expected {}, found an array", expected(arg))),
        other => vec![scalar(key, other, arg)?],
    };
    check_values(key, &values, arg, cmd)?;
    Ok(values)
}

fn scalar(key: &str, v: &Value, arg: &Arg) -> Result<String, String> {
    let wrong = || format!("`{key}`: expected {}, found {}", expected(arg), type_name(v));
    match v {
        Value::Boolean(b) if is_bool(arg) => Ok(b.value().to_string()),
        _ if is_bool(arg) => Err(wrong()),
        Value::Integer(i) if !is_text(arg) => Ok(i.value().to_string()),
        Value::String(s) if !is_integer(arg) => Ok(s.value().clone()),
        // Durations, addresses and other parsed values take a string or an integer
        // (`sts-max-session = 3600`); the flag's parser judges it below.
        _ => Err(wrong()),
    }
}

fn check_values(key: &str, values: &[String], arg: &Arg, _cmd: &Command) -> Result<(), String> {
    if is_bool(arg) && matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) {
        return Ok(()); // a TOML boolean, checked by `scalar`
    }
    let long = arg.get_long().unwrap_or_default();
    // The flag alone in a command of its own, given the value on its command line: the
    // flag's own value parser (and range, possible values) judges it.
    let probe = arg
        .clone()
        .env(None)
        .default_value(None)
        .required(false)
        .action(ArgAction::Append);
    let args: Vec<String> = values.iter().map(|v| format!("--{long}={v}")).collect();
    let result = Command::new("kura")
        .no_binary_name(true)
        .disable_help_flag(true)
        .arg(probe)
        .try_get_matches_from(args);
    if let Err(e) = result {
        let text = e.to_string();
        let first = text.lines().next().unwrap_or_default();
        let first = first.strip_prefix("error: ").unwrap_or(first);
        return Err(format!("`{key}`: {first}"));
    }
    Ok(())
}

/// Makes each supplied value its flag's default, in order (a later value for
/// the same flag replaces an earlier one).
pub fn apply(cmd: Command, supplied: &[Supplied]) -> Command {
    supplied.iter().fold(cmd, |cmd, s| apply_one(cmd, &s.command, s))
}

fn apply_one(cmd: Command, path: &[String], s: &Supplied) -> Command {
    match path.split_first() {
        // A flag (`--dry-run`, SetTrue) takes its value from the default too.
        None => cmd.mut_arg(&s.arg, |a| a.default_values(s.values.clone())),
        Some((head, rest)) => cmd.mut_subcommand(head, |sub| apply_one(sub, rest, s)),
    }
}

/// `kura config reference` / `kura config check`.
pub fn command(command: &ConfigCommand, cli: Command, config: Option<&Path>) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Reference => {
            print!("{}", reference(cli));
            Ok(())
        }
        ConfigCommand::Check => {
            print!("{}", check(cli, config)?);
            Ok(())
        }
    }
}

/// Parses `kura serve` with the file and the environment (no flags) and
/// lists each setting: key, value, source.
pub fn check(cli: Command, config: Option<&Path>) -> anyhow::Result<String> {
    let mut from_file = Vec::new();
    let mut order = cli.clone();
    order.build();
    let mut cmd = cli;
    if let Some(path) = config {
        let table = read_file(path)?;
        let supplied = resolve(&cmd, &table).map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        from_file = supplied
            .iter()
            .filter(|s| s.command == [TOP_LEVEL_COMMAND])
            .map(|s| s.arg.clone())
            .collect();
        cmd = apply(cmd, &supplied);
    }
    let matches = cmd
        .clone()
        .try_get_matches_from(["kura", TOP_LEVEL_COMMAND])
        .map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
    let serve_matches = matches.subcommand_matches(TOP_LEVEL_COMMAND).expect("parsed serve");
    // In the order of the flags' definitions (a supplied flag moves to the end of its command).
    let serve = order.find_subcommand(TOP_LEVEL_COMMAND).expect("serve");
    let mut out = String::new();
    match config {
        Some(p) => writeln!(out, "# {}: ok", p.display())?,
        None => writeln!(out, "# no configuration file (--config / KURA_CONFIG)")?,
    }
    for arg in keys(serve) {
        let id = arg.get_id().as_str();
        let source = source_of(serve_matches, id, from_file.iter().any(|f| f == id));
        let shown = if arg.is_hide_env_values_set() && source != "default" {
            "\"<hidden>\"".to_string()
        } else {
            raw_values(serve_matches, id)
        };
        writeln!(out, "{} = {shown}  # {source}", arg.get_long().unwrap_or(id))?;
    }
    Ok(out)
}

fn source_of(m: &ArgMatches, id: &str, in_file: bool) -> &'static str {
    match m.value_source(id) {
        Some(clap::parser::ValueSource::CommandLine) => "flag",
        Some(clap::parser::ValueSource::EnvVariable) => "env",
        Some(clap::parser::ValueSource::DefaultValue) if in_file => "file",
        _ => "default",
    }
}

fn raw_values(m: &ArgMatches, id: &str) -> String {
    let vals: Vec<String> = m
        .get_raw(id)
        .map(|r| {
            r.map(|v| format!("{:?}", mask_password(&v.to_string_lossy())))
                .collect()
        })
        .unwrap_or_default();
    match vals.len() {
        0 => "(unset)".into(),
        1 => vals.into_iter().next().unwrap_or_default(),
        _ => format!("[{}]", vals.join(", ")),
    }
}

/// A URL's password (`postgres://user:secret@host/db`) as `***`: `config check`'s
/// output may be pasted anywhere.
pub fn mask_password(v: &str) -> String {
    let Some(scheme_end) = v.find("://") else {
        return v.to_string();
    };
    let rest = &v[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return v.to_string();
    };
    match rest[..at].find(':') {
        Some(colon) => format!("{}{}:***{}", &v[..scheme_end + 3], &rest[..colon], &rest[at..]),
        None => v.to_string(),
    }
}

/// The Markdown reference of every key, generated from the command tree:
/// docs/CONFIG.md is this text.
pub fn reference(cli: Command) -> String {
    let mut cli = cli;
    cli.build();
    let mut out = String::new();
    out.push_str(
        "# Configuration reference\n\n\
         <!-- Generated by `kura config reference > docs/CONFIG.md`; a test fails when this file differs. -->\n\n\
         Every setting is a flag, an environment variable and a key of the configuration file\n\
         (`kura.toml`), read when `--config PATH` or `KURA_CONFIG` names it; no default path is read.\n\
         Precedence: flags > environment > file > built-in defaults.\n\n\
         Top-level keys are the flags of `kura serve`; every other command that has a flag of the\n\
         same name (e.g. `data-dir` for `kura gc`) reads the top-level key too. A command's own\n\
         flags go in a table named after it (`[gc]`, `[jobs.list]`, or dotted keys such as\n\
         `gc.dry-run = true`); a table may also repeat a top-level key to override it for that command.\n\
         Values have the flag's type: strings (durations such as `\"1h\"`, addresses, paths),\n\
         integers, booleans (`true`/`false`). An unknown key or a value of the wrong type is an\n\
         error naming the key. `kura config check` validates a file and prints each `serve`\n\
         setting with its source.\n\n\
         | Key | Flag | Environment | Default | Description |\n\
         |---|---|---|---|---|\n",
    );
    let top = cli.find_subcommand(TOP_LEVEL_COMMAND).expect("serve command").clone();
    let top_keys: Vec<String> = keys(&top).filter_map(|a| a.get_long().map(str::to_string)).collect();
    for arg in keys(&top) {
        row(&mut out, "", &format!("kura {TOP_LEVEL_COMMAND}"), arg);
    }
    let mut tables = Vec::new();
    collect_commands(&cli, &mut Vec::new(), &mut tables);
    for (path, c) in tables {
        if path == [TOP_LEVEL_COMMAND] {
            continue;
        }
        for arg in keys(c) {
            if top_keys.iter().any(|k| Some(k.as_str()) == arg.get_long()) {
                continue;
            }
            row(
                &mut out,
                &format!("{}.", path.join(".")),
                &format!("kura {}", path.join(" ")),
                arg,
            );
        }
    }
    out
}

fn collect_commands<'a>(cmd: &'a Command, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, &'a Command)>) {
    for sub in cmd.get_subcommands() {
        if SKIPPED_COMMANDS.contains(&sub.get_name()) {
            continue;
        }
        path.push(sub.get_name().to_string());
        out.push((path.clone(), sub));
        collect_commands(sub, path, out);
        path.pop();
    }
}

fn row(out: &mut String, prefix: &str, command: &str, arg: &Arg) {
    let long = arg.get_long().unwrap_or_default();
    let env = arg
        .get_env()
        .map(|e| format!("`{}`", e.to_string_lossy()))
        .unwrap_or_default();
    let defaults: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    let default = if defaults.is_empty() || defaults.iter().all(|d| d.is_empty()) {
        String::new()
    } else {
        format!("`{}`", defaults.join(","))
    };
    let help = arg
        .get_long_help()
        .or(arg.get_help())
        .map(|h| h.to_string())
        .unwrap_or_default();
    let help = help
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|");
    let flag_note = if prefix.is_empty() {
        String::new()
    } else {
        format!(" ({command})")
    };
    let _ = writeln!(
        out,
        "| `{prefix}{long}` | `--{long}`{flag_note} | {env} | {default} | {help} |"
    );
}

#[cfg(test)]
mod tests;

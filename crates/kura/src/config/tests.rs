use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};

use super::*;

/// A command tree shaped like kura's: `serve` (the top-level keys) and
/// others sharing some of its flags.
#[derive(Parser, Debug)]
struct T {
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    Serve(Serve),
    Gc {
        #[arg(long, default_value = "./d")]
        data_dir: PathBuf,
        #[arg(long)]
        dry_run: bool,
    },
    Jobs {
        #[command(subcommand)]
        command: Jobs,
    },
}

#[derive(Subcommand, Debug)]
enum Jobs {
    List {
        #[arg(long, default_value = "./d")]
        data_dir: PathBuf,
        #[arg(long)]
        state: Option<String>,
    },
}

#[derive(clap::Args, Debug)]
struct Serve {
    #[arg(long, default_value = "127.0.0.1:5000")]
    listen: std::net::SocketAddr,
    #[arg(long, default_value = "./d")]
    data_dir: PathBuf,
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    workers: u32,
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    interval: Duration,
    #[arg(long)]
    redirect: bool,
    #[arg(long, value_parser = clap::builder::BoolishValueParser::new())]
    hosted: Option<bool>,
    #[arg(long)]
    peer: Vec<String>,
}

fn parse_with(toml: &str, args: &[&str]) -> Result<T, String> {
    let table = parse_toml(toml)?;
    let cmd = T::command();
    let supplied = resolve(&cmd, &table)?;
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    apply(cmd, &supplied)
        .try_get_matches_from(args)
        .and_then(|mut m| <T as clap::FromArgMatches>::from_arg_matches_mut(&mut m))
        .map_err(|e| e.to_string())
}

fn serve(t: T) -> Serve {
    match t.command {
        Cmd::Serve(s) => s,
        other => panic!("not serve: {other:?}"),
    }
}

#[test]
fn file_values_replace_defaults_and_flags_win() {
    let file = "listen = \"0.0.0.0:7000\"\nworkers = 9\ninterval = \"5m\"\nredirect = true\nhosted = false\npeer = [\"a\", \"b\"]\n";
    let s = serve(parse_with(file, &["kura", "serve"]).unwrap());
    assert_eq!(s.listen.to_string(), "0.0.0.0:7000");
    assert_eq!(s.workers, 9);
    assert_eq!(s.interval, Duration::from_secs(300));
    assert!(s.redirect);
    assert_eq!(s.hosted, Some(false));
    assert_eq!(s.peer, ["a", "b"]);
    let s = serve(parse_with(file, &["kura", "serve", "--listen", "127.0.0.1:1", "--workers", "2"]).unwrap());
    assert_eq!(s.listen.to_string(), "127.0.0.1:1");
    assert_eq!(s.workers, 2);
    // Without the file: the built-in defaults.
    let s = serve(parse_with("", &["kura", "serve"]).unwrap());
    assert_eq!(s.listen.to_string(), "127.0.0.1:5000");
    assert!(!s.redirect);
    assert_eq!(s.hosted, None);
}

/// A tree of its own whose flag reads an environment variable only this test
/// sets (tests run in parallel: no other test parses it).
#[derive(Parser, Debug)]
struct E {
    #[command(subcommand)]
    command: ECmd,
}

#[derive(Subcommand, Debug)]
enum ECmd {
    Serve {
        #[arg(long, env = "KURA_CONFIG_UNIT_TEST_WORKERS", default_value_t = 4)]
        workers: u32,
    },
}

#[test]
fn environment_wins_over_the_file() {
    let parse = || {
        let cmd = E::command();
        let supplied = resolve(&cmd, &parse_toml("workers = 9\n").unwrap()).unwrap();
        let mut m = apply(cmd, &supplied).try_get_matches_from(["kura", "serve"]).unwrap();
        let ECmd::Serve { workers } = <E as clap::FromArgMatches>::from_arg_matches_mut(&mut m)
            .unwrap()
            .command;
        workers
    };
    assert_eq!(parse(), 9);
    std::env::set_var("KURA_CONFIG_UNIT_TEST_WORKERS", "7");
    let from_env = parse();
    std::env::remove_var("KURA_CONFIG_UNIT_TEST_WORKERS");
    assert_eq!(from_env, 7);
}

#[test]
fn top_level_keys_reach_other_commands_and_tables_override() {
    let file = "data-dir = \"/srv/kura\"\n[gc]\ndry-run = true\n[jobs.list]\nstate = \"dead\"\n";
    match parse_with(file, &["kura", "gc"]).unwrap().command {
        Cmd::Gc { data_dir, dry_run } => {
            assert_eq!(data_dir, PathBuf::from("/srv/kura"));
            assert!(dry_run);
        }
        other => panic!("{other:?}"),
    }
    match parse_with(file, &["kura", "jobs", "list"]).unwrap().command {
        Cmd::Jobs {
            command: Jobs::List { data_dir, state },
        } => {
            assert_eq!(data_dir, PathBuf::from("/srv/kura"));
            assert_eq!(state.as_deref(), Some("dead"));
        }
        other => panic!("{other:?}"),
    }
    // A command's table overrides the top-level value there only.
    let file = "data-dir = \"/srv/kura\"\ngc.data-dir = \"/srv/other\"\n";
    match parse_with(file, &["kura", "gc"]).unwrap().command {
        Cmd::Gc { data_dir, .. } => assert_eq!(data_dir, PathBuf::from("/srv/other")),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        serve(parse_with(file, &["kura", "serve"]).unwrap()).data_dir,
        PathBuf::from("/srv/kura")
    );
}

#[test]
fn unknown_keys_and_wrong_types_name_the_key() {
    let err = |file: &str| resolve(&T::command(), &parse_toml(file).unwrap()).unwrap_err();
    let e = err("nope = 1\n");
    assert!(e.contains("unknown key `nope`"), "{e}");
    let e = err("dry-run = true\n");
    assert!(e.contains("`dry-run`") && e.contains("[gc]"), "{e}");
    let e = err("[gc]\nlisten = \"127.0.0.1:1\"\n");
    assert!(e.contains("unknown key `gc.listen`"), "{e}");
    let e = err("[push]\nx = 1\n");
    assert!(e.contains("unknown table [push]"), "{e}");
    let e = err("[jobs.lst]\nstate = \"x\"\n");
    assert!(e.contains("[jobs.lst]"), "{e}");
    let e = err("workers = \"9\"\n");
    assert!(e.contains("`workers`: expected an integer, found a string"), "{e}");
    let e = err("workers = 0\n");
    assert!(e.contains("`workers`") && e.contains("0 is not in 1.."), "{e}");
    let e = err("redirect = \"yes\"\n");
    assert!(e.contains("`redirect`: expected a boolean"), "{e}");
    let e = err("listen = 5000\n");
    assert!(e.contains("`listen`") && e.contains("invalid"), "{e}");
    let e = err("listen = true\n");
    assert!(
        e.contains("`listen`: expected a string or an integer, found a boolean"),
        "{e}"
    );
    let e = err("data-dir = 5\n");
    assert!(e.contains("`data-dir`: expected a string, found an integer"), "{e}");
    let e = err("listen = [\"127.0.0.1:1\"]\n");
    assert!(e.contains("`listen`") && e.contains("array"), "{e}");
    let e = err("interval = \"soon\"\n");
    assert!(e.contains("`interval`: invalid value 'soon'"), "{e}");
    let e = err("[gc]\nstate = 1\n");
    assert!(e.contains("`gc.state`"), "{e}");
    assert!(parse_toml("listen = [").unwrap_err().contains("not valid TOML"));
}

#[test]
fn config_path_comes_from_the_command_line() {
    let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
    assert_eq!(
        config_path(&args(&["kura", "serve", "--config", "/a.toml"])),
        Some(PathBuf::from("/a.toml"))
    );
    assert_eq!(
        config_path(&args(&["kura", "--config=/b.toml", "gc"])),
        Some(PathBuf::from("/b.toml"))
    );
    assert_eq!(config_path(&args(&["kura", "serve", "--", "--config", "x"])), None);
    assert_eq!(config_path(&args(&["kura", "serve"])), None);
}

/// docs/CONFIG.md is `kura config reference`: regenerate it with
/// `kura config reference > docs/CONFIG.md` when a flag changes.
#[test]
fn docs_config_md_is_the_generated_reference() {
    let generated = reference(crate::Cli::command());
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/CONFIG.md");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/CONFIG.md differs from `kura config reference`: run `kura config reference > docs/CONFIG.md`"
    );
}

/// Every flag of the real command tree is a key: the reference lists each
/// long flag of `kura serve` exactly once, and a file naming every one of them
/// with its own default parses.
#[test]
fn every_serve_flag_is_a_key() {
    let cli = crate::Cli::command();
    let text = reference(cli.clone());
    let serve = cli.find_subcommand(TOP_LEVEL_COMMAND).unwrap().clone();
    let mut n = 0;
    for arg in keys(&serve) {
        let long = arg.get_long().unwrap();
        assert_eq!(text.matches(&format!("| `{long}` |")).count(), 1, "{long}");
        n += 1;
    }
    assert!(n > 30, "{n} serve flags");
    let table = parse_toml("listen = \"127.0.0.1:9\"\n[gc]\ndry-run = true\n[jobs.list]\nstate = \"dead\"\n").unwrap();
    let supplied = resolve(&cli, &table).unwrap();
    assert!(supplied.iter().any(|s| s.command == ["serve"] && s.arg == "listen"));
    assert!(supplied.iter().any(|s| s.command == ["gc"] && s.arg == "dry_run"));
}

#[test]
fn check_output_hides_url_passwords() {
    assert_eq!(
        mask_password("postgres://kura:s3cr@t@db:5432/kura?sslmode=require"),
        "postgres://kura:***@db:5432/kura?sslmode=require"
    );
    assert_eq!(mask_password("postgres://kura@db/kura"), "postgres://kura@db/kura");
    assert_eq!(mask_password("https://s3.example/a@b"), "https://s3.example/a@b");
    assert_eq!(mask_password("0.0.0.0:5000"), "0.0.0.0:5000");
}

//! The configuration file (`--config changeflow.toml`, or `CHANGEFLOW_CONFIG`): every option
//! that has a flag, by its long name, at the top level (global options) or in a table named
//! after its subcommand (`[serve]`, `[worker]`, ...). Precedence is flag > environment > file >
//! default, through clap alone: a file value becomes the flag it names, added only when neither
//! the command line nor the option's environment variable sets it. Secrets are refused in the
//! file (they come from the environment or Vault). See `changeflow.example.toml`.

use clap::{Arg, ArgAction, Command};
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::PathBuf;

/// The environment variable naming the configuration file.
pub(crate) const CONFIG_ENV: &str = "CHANGEFLOW_CONFIG";

/// What the file set, to report sources (`config show`).
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    pub(crate) path: Option<PathBuf>,
    /// (subcommand or "" for global, arg id) of every option taken from the file.
    pub(crate) from_file: BTreeSet<(String, String)>,
    /// The file's values of other subcommands' options, by (subcommand, arg id).
    pub(crate) elsewhere: std::collections::BTreeMap<(String, String), String>,
}

/// The configuration file named by `--config` or `CHANGEFLOW_CONFIG`, applied to `argv`:
/// returns the arguments with the file's values added as flags, and what came from the file.
pub(crate) fn apply(
    command: &Command,
    argv: Vec<OsString>,
) -> Result<(Vec<OsString>, Loaded), String> {
    let path = config_path(&argv);
    let Some(path) = path else {
        return Ok((argv, Loaded::default()));
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("configuration file {}: {e}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("configuration file {}: {e}", path.display()))?;
    let words: Vec<String> = argv
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let subcommand = words
        .iter()
        .skip(1)
        .find_map(|w| command.find_subcommand(w).map(|c| c.get_name().to_string()));
    let mut added: Vec<OsString> = Vec::new();
    let mut loaded = Loaded {
        path: Some(path.clone()),
        ..Default::default()
    };
    let where_ = |section: &str, key: &str| {
        let prefix = if section.is_empty() {
            String::new()
        } else {
            format!("[{section}] ")
        };
        format!("{prefix}{key} in {}", path.display())
    };
    for (key, value) in &table {
        if let toml::Value::Table(section) = value {
            let Some(sub) = command.find_subcommand(key) else {
                return Err(format!("unknown section [{key}] in {}", path.display()));
            };
            for (option, value) in section {
                let arg = find_arg(sub, command, option)
                    .ok_or_else(|| format!("unknown option {}", where_(key, option)))?;
                if subcommand.as_deref() == Some(key.as_str()) {
                    add(
                        &mut added,
                        &mut loaded,
                        key,
                        arg,
                        value,
                        &words,
                        &where_(key, option),
                    )?;
                } else {
                    check(arg, value, &where_(key, option))?;
                    loaded
                        .elsewhere
                        .insert((key.clone(), arg.get_id().to_string()), display(value));
                }
            }
            continue;
        }
        let arg = command
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()) || a.get_id() == key.as_str())
            .ok_or_else(|| format!("unknown option {}", where_("", key)))?;
        add(
            &mut added,
            &mut loaded,
            "",
            arg,
            value,
            &words,
            &where_("", key),
        )?;
    }
    let mut argv = argv;
    match subcommand {
        // After the subcommand, where its own options belong (global ones may go anywhere).
        Some(name) => {
            let at = words
                .iter()
                .position(|w| *w == name)
                .map_or(argv.len(), |i| i + 1);
            argv.splice(at..at, added);
        }
        None => argv.extend(added),
    }
    Ok((argv, loaded))
}

/// `--config PATH`, `--config=PATH`, or `CHANGEFLOW_CONFIG`.
fn config_path(argv: &[OsString]) -> Option<PathBuf> {
    let words: Vec<String> = argv
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    for (i, word) in words.iter().enumerate() {
        if let Some(path) = word.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
        if word == "--config" {
            return words.get(i + 1).map(PathBuf::from);
        }
    }
    std::env::var_os(CONFIG_ENV).map(PathBuf::from)
}

/// A subcommand's option by long name (or id), or a global one.
fn find_arg<'a>(sub: &'a Command, root: &'a Command, name: &str) -> Option<&'a Arg> {
    let matches =
        |a: &&Arg| a.get_long() == Some(name) || a.get_long() == Some(&name.replace('_', "-"));
    sub.get_arguments()
        .find(matches)
        .or_else(|| root.get_arguments().find(matches))
}

/// Refuses what a file may not hold: secrets, and options without a flag.
fn check(arg: &Arg, value: &toml::Value, at: &str) -> Result<(), String> {
    if crate::cli::is_secret(arg.get_id().as_str()) {
        return Err(format!(
            "{at} is a secret: secrets are read from the environment or Vault, never from a file"
        ));
    }
    if arg.get_long().is_none() {
        return Err(format!("{at} cannot be set in a file"));
    }
    if matches!(value, toml::Value::Table(_)) {
        return Err(format!("{at} must be a value, not a table"));
    }
    Ok(())
}

/// Adds a file value as the flag it names, unless the command line or the environment sets it.
fn add(
    added: &mut Vec<OsString>,
    loaded: &mut Loaded,
    section: &str,
    arg: &Arg,
    value: &toml::Value,
    words: &[String],
    at: &str,
) -> Result<(), String> {
    check(arg, value, at)?;
    let long = arg.get_long().unwrap_or_default();
    let on_command_line = words
        .iter()
        .any(|w| *w == format!("--{long}") || w.starts_with(&format!("--{long}=")));
    let in_environment = arg
        .get_env()
        .is_some_and(|name| std::env::var_os(name).is_some());
    if on_command_line || in_environment {
        return Ok(());
    }
    let scalar = |v: &toml::Value| match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        _ => Err(format!("{at} must be a string, number or boolean")),
    };
    match (arg.get_action(), value) {
        (ArgAction::SetTrue, toml::Value::Boolean(true)) => added.push(format!("--{long}").into()),
        (ArgAction::SetTrue, toml::Value::Boolean(false)) => {}
        (ArgAction::SetTrue, _) => return Err(format!("{at} must be true or false")),
        (_, toml::Value::Array(items)) => {
            for item in items {
                added.push(format!("--{long}={}", scalar(item)?).into());
            }
        }
        (_, value) => added.push(format!("--{long}={}", scalar(value)?).into()),
    }
    loaded
        .from_file
        .insert((section.to_string(), arg.get_id().to_string()));
    Ok(())
}

/// A file value as `config show` prints it (lists comma-separated, like the flags take them).
fn display(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(items) => items.iter().map(display).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// `changeflow config show`: every option of every command with its effective value and where
/// it comes from (flag, environment, file, default); secrets only say whether they are set.
pub(crate) fn show(command: &Command, loaded: &Loaded, sub_matches: &clap::ArgMatches) -> String {
    let mut out = String::new();
    if let Some(path) = &loaded.path {
        out.push_str(&format!("# configuration file: {}\n", path.display()));
    } else {
        out.push_str("# no configuration file (--config or CHANGEFLOW_CONFIG)\n");
    }
    let describe =
        |section: &str, arg: &Arg, matched: Option<&clap::ArgMatches>| -> Option<String> {
            let long = arg.get_long()?;
            if ["help", "version", "config"].contains(&long) {
                return None;
            }
            let id = arg.get_id().as_str();
            let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
            let env_value = env.as_ref().and_then(std::env::var_os);
            let secret = crate::cli::is_secret(id);
            let (value, source) = if secret {
                let set = if env_value.is_some() {
                    "<set>"
                } else {
                    "<unset>"
                };
                (
                    set.to_string(),
                    format!("environment {}", env.unwrap_or_default()),
                )
            } else if let Some(values) = matched.and_then(|m| m.get_raw(id)) {
                let text: Vec<String> = values.map(|v| v.to_string_lossy().into_owned()).collect();
                let source = match matched.and_then(|m| m.value_source(id)) {
                    Some(clap::parser::ValueSource::CommandLine)
                        if loaded
                            .from_file
                            .contains(&(section.to_string(), id.to_string())) =>
                    {
                        "file".to_string()
                    }
                    Some(clap::parser::ValueSource::CommandLine) => "flag".to_string(),
                    Some(clap::parser::ValueSource::EnvVariable) => {
                        format!("environment {}", env.unwrap_or_default())
                    }
                    _ => "default".to_string(),
                };
                (text.join(","), source)
            } else if let Some(value) = env_value {
                (
                    value.to_string_lossy().into_owned(),
                    format!("environment {}", env.unwrap_or_default()),
                )
            } else if let Some(value) = loaded.elsewhere.get(&(section.to_string(), id.to_string()))
            {
                (value.clone(), "file".to_string())
            } else {
                let defaults: Vec<String> = arg
                    .get_default_values()
                    .iter()
                    .map(|v| v.to_string_lossy().into_owned())
                    .collect();
                if defaults.is_empty() {
                    ("<unset>".to_string(), "default".to_string())
                } else {
                    (defaults.join(","), "default".to_string())
                }
            };
            Some(format!("{long} = {value:?}  # {source}\n"))
        };
    for arg in command.get_arguments() {
        if let Some(line) = describe("", arg, Some(sub_matches)) {
            out.push_str(&line);
        }
    }
    for sub in command.get_subcommands() {
        if sub.is_hide_set() || ["config", "help"].contains(&sub.get_name()) {
            continue;
        }
        let lines: Vec<String> = sub
            .get_arguments()
            .filter(|a| !a.is_global_set())
            .filter_map(|a| describe(sub.get_name(), a, None))
            .collect();
        if !lines.is_empty() {
            out.push_str(&format!("\n[{}]\n", sub.get_name()));
            lines.iter().for_each(|l| out.push_str(l));
        }
    }
    out
}

//! Loading the configuration: built-in defaults, the TOML file, the environment and the
//! flags, merged per key in that order (a flag wins over a `TAILBOX_*` variable, which
//! wins over the file, which wins over the default).
//!
//! Each layer is a [`Settings`] (clap parses flags and environment, serde the file)
//! seen as a TOML table that holds only the keys the layer sets; tables merge per key
//! (`kafka_props`: the file's table, then `--kafka-prop` on top), anything else is
//! replaced whole. Where each value came from is kept for error messages and
//! `config check`. A value of the wrong type becomes one line naming the key, the value,
//! where it came from and the fix — from clap ([`clap_error`]) or serde alike.

use std::{
    collections::BTreeMap,
    ffi::OsString,
    fmt,
    path::{Path, PathBuf},
};

use clap::{ArgMatches, parser::ValueSource};
use serde::Deserialize;

use crate::{
    config::REDACTED,
    options::{Settings, defaults, key, keys},
};

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A command-line flag.
    Flag,
    /// A `TAILBOX_*` environment variable.
    Env,
    /// The config file.
    File(PathBuf),
    /// The built-in default.
    Default,
}

impl Source {
    /// How to refer to `key` as set from this source, e.g. `--max-in-flight`,
    /// `TAILBOX_MAX_IN_FLIGHT`, `max_in_flight in /etc/tailbox.toml`.
    pub fn label(&self, name: &str) -> String {
        match (self, key(name)) {
            (Source::Flag, Some(key)) => key.flag.clone(),
            (Source::Env, Some(key)) => key.env.clone(),
            (Source::File(path), _) => format!("{name} in {}", path.display()),
            _ => format!("{name} (default)"),
        }
    }

    /// Short form for `config check`: `flag --x`, `env TAILBOX_X`, `file PATH`, `default`.
    pub fn short(&self, name: &str) -> String {
        match self {
            Source::Flag => format!("flag {}", self.label(name)),
            Source::Env => format!("env {}", self.label(name)),
            Source::File(path) => format!("file {}", path.display()),
            Source::Default => "default".into(),
        }
    }
}

/// Invalid configuration: one line per problem, each naming the field, the value,
/// where it came from and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

impl std::error::Error for ConfigErrors {}

/// The merged settings, where each value came from, and what was wrong in the file.
#[derive(Debug)]
pub struct Loaded {
    pub settings: Settings,
    /// The merged values (the table `settings` was read from).
    pub values: toml::Table,
    /// Per key, and per `kafka_props` property as `kafka_props.PROP`.
    pub sources: BTreeMap<String, Source>,
    pub file: Option<PathBuf>,
    /// Keys of the file refused (their default is used meanwhile, so every other
    /// problem is reported in the same run).
    pub errors: Vec<String>,
}

/// Merges defaults, the file at `file` (if any) and `given` (the options clap parsed;
/// `matches` says which came from a flag and which from the environment).
pub fn load(
    file: Option<&Path>,
    given: &Settings,
    matches: &ArgMatches,
) -> Result<Loaded, ConfigErrors> {
    let mut values = toml::Table::new();
    let mut sources = BTreeMap::new();
    let mut errors = Vec::new();
    merge(&mut values, &mut sources, table(&defaults())?, &|_| Source::Default);
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![format!(
                "cannot read config file {}: {e}; fix: check --config/TAILBOX_CONFIG and the file's permissions",
                path.display()
            )])
        })?;
        let (layer, refused) = parse_file(path, &text)?;
        errors = refused;
        let source = Source::File(path.to_owned());
        merge(&mut values, &mut sources, layer, &|_| source.clone());
    }
    let mut layer = table(given)?;
    layer.retain(|name, _| given_source(matches, name).is_some());
    merge(&mut values, &mut sources, layer, &|name| {
        given_source(matches, name).unwrap_or(Source::Default)
    });
    let settings = Settings::deserialize(values.clone())
        .map_err(|e| ConfigErrors(vec![format!("invalid configuration: {}", e.message())]))?;
    Ok(Loaded { settings, values, sources, file: file.map(Path::to_owned), errors })
}

/// A layer as a table of the keys it sets.
fn table(settings: &Settings) -> Result<toml::Table, ConfigErrors> {
    toml::Table::try_from(settings).map_err(|e| {
        ConfigErrors(vec![format!("invalid configuration: {e}; fix: use smaller numbers")])
    })
}

/// Where clap found `name`: a flag, a variable, or neither (a default, or an option the
/// subcommand does not have).
fn given_source(matches: &ArgMatches, name: &str) -> Option<Source> {
    // try_get_raw first: it answers Err for an option this subcommand does not have,
    // where value_source would panic (in debug builds).
    matches.try_get_raw(name).ok()??;
    match matches.value_source(name)? {
        ValueSource::CommandLine => Some(Source::Flag),
        ValueSource::EnvVariable => Some(Source::Env),
        _ => None,
    }
}

/// Puts `layer` over `into`: a table per key (`kafka_props`, one level deep), anything
/// else whole. Sources are kept per key, and per property as `kafka_props.PROP`.
fn merge(
    into: &mut toml::Table,
    sources: &mut BTreeMap<String, Source>,
    layer: toml::Table,
    source: &dyn Fn(&str) -> Source,
) {
    for (name, value) in layer {
        let from = source(&name);
        match (value, into.get_mut(&name)) {
            (toml::Value::Table(entries), Some(toml::Value::Table(table))) => {
                for (entry, value) in entries {
                    sources.insert(format!("{name}.{entry}"), from.clone());
                    table.insert(entry, value);
                }
            }
            (value, _) => {
                if let toml::Value::Table(entries) = &value {
                    for entry in entries.keys() {
                        sources.insert(format!("{name}.{entry}"), from.clone());
                    }
                }
                sources.insert(name.clone(), from);
                into.insert(name, value);
            }
        }
    }
}

/// Parses the file and checks it key by key, so every problem is named at once: the
/// layer of the keys that are fine, and a line for each key that is not.
fn parse_file(path: &Path, text: &str) -> Result<(toml::Table, Vec<String>), ConfigErrors> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let line = e
            .span()
            .map(|span| text[..span.start.min(text.len())].lines().count().max(1))
            .map(|n| format!(", line {n}"))
            .unwrap_or_default();
        ConfigErrors(vec![format!(
            "config file {}{line} is not valid TOML: {}; fix: write key = value lines, strings in quotes (see docs/configuration.md)",
            path.display(),
            e.message().trim()
        )])
    })?;
    let mut errors = Vec::new();
    let mut checked = toml::Table::new();
    for (name, value) in table {
        match check_file_key(path, &name, value) {
            Ok(value) => _ = checked.insert(name, value),
            Err(line) => errors.push(line),
        }
    }
    Ok((checked, errors))
}

/// One key of the file, deserialised on its own so that an error belongs to it. A
/// number or boolean written as a string (`max_in_flight = "10"`) is taken as one, as
/// it always was.
fn check_file_key(path: &Path, name: &str, value: toml::Value) -> Result<toml::Value, String> {
    let path = path.display();
    if let Some(key) = key(name).filter(|k| !k.in_file) {
        return Err(format!(
            "config file {path}: {name} is not accepted in a config file: it applies to one start, deliberately; fix: remove it and pass {} on the command line (or set {}) for that start",
            key.flag, key.env
        ));
    }
    let fits = |value: &toml::Value| {
        Settings::deserialize(toml::Table::from_iter([(name.to_owned(), value.clone())]))
    };
    let Err(e) = fits(&value) else {
        return Ok(value);
    };
    if let toml::Value::String(text) = &value {
        let text = text.trim();
        let number = text.parse().ok().map(toml::Value::Integer);
        let boolean = text.parse().ok().map(toml::Value::Boolean);
        if let Some(value) = [number, boolean].into_iter().flatten().find(|v| fits(v).is_ok()) {
            return Ok(value);
        }
    }
    if e.message().starts_with(&format!("unknown field `{name}`")) {
        let hint = closest_key(name).map(|k| format!("did you mean {k}? ")).unwrap_or_default();
        let known: Vec<&str> =
            keys().iter().filter(|k| k.in_file).map(|k| k.name.as_str()).collect();
        return Err(format!(
            "config file {path}: unknown key {name:?}; fix: {hint}remove it or use one of: {}",
            known.join(", ")
        ));
    }
    let shown =
        if key(name).is_some_and(|k| k.secret) { REDACTED.to_owned() } else { value.to_string() };
    let example = table(&defaults())
        .ok()
        .and_then(|d| d.get(name).filter(|v| !v.to_string().is_empty()).map(|v| v.to_string()))
        .map(|d| format!("e.g. {name} = {d}"))
        .unwrap_or_else(|| format!("give {name} a value of that type (docs/configuration.md)"));
    Err(format!("invalid {name} in {path} {shown}: {}; fix: {example}", e.message().trim()))
}

/// The known key closest to a misspelt one (edit distance ≤ 3).
pub fn closest_key(name: &str) -> Option<&'static str> {
    keys()
        .iter()
        .filter(|k| k.in_file)
        .map(|k| (strsim::levenshtein(name, &k.name), k.name.as_str()))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, k)| k)
}

/// clap's refusal of a flag's or variable's value (a number that is not one, a sink it
/// does not know) as our one line, or `None` for other errors (unknown flags, `--help`),
/// which clap reports itself. `argv` tells a flag from a variable: clap reads the
/// variable only when the flag is absent.
pub fn clap_error(err: &clap::Error, argv: &[OsString]) -> Option<ConfigErrors> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(err.kind(), ErrorKind::ValueValidation | ErrorKind::InvalidValue) {
        return None;
    }
    let text = |kind| match err.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    let arg = text(ContextKind::InvalidArg)?;
    let flag = arg.split([' ', '=', '[']).next()?;
    let key = keys().iter().find(|k| k.flag == flag)?;
    let given = argv.iter().filter_map(|a| a.to_str());
    let source = if given.into_iter().any(|a| a == flag || a.starts_with(&format!("{flag}="))) {
        Source::Flag
    } else {
        Source::Env
    };
    // An empty value with nothing to choose from is a missing one: clap says so best.
    let value = text(ContextKind::InvalidValue).filter(|v| !v.is_empty())?;
    let shown = if key.secret { REDACTED.to_owned() } else { value };
    let reason = match (err.get(ContextKind::ValidValue), std::error::Error::source(err)) {
        (Some(ContextValue::Strings(valid)), _) if !valid.is_empty() => {
            format!("expected one of {}", valid.join(", "))
        }
        (_, Some(cause)) if cause.is::<std::num::ParseIntError>() => {
            format!("expected a whole number ({cause})")
        }
        (_, Some(cause)) => cause.to_string(),
        (_, None) => "not a valid value".to_owned(),
    };
    let example = table(&defaults())
        .ok()
        .and_then(|d| d.get(&key.name).map(|v| v.to_string().trim_matches('"').to_owned()))
        .filter(|d| !d.is_empty());
    let fix = match (&source, example) {
        (Source::Flag, Some(d)) => format!("e.g. {}={d}", key.flag),
        (_, Some(d)) => format!("e.g. {}={d}", key.env),
        (_, None) => format!("see `tailbox run --help` for {}", key.flag),
    };
    Some(ConfigErrors(vec![format!(
        "invalid {} {shown:?}: {reason}; fix: {fix}",
        source.label(&key.name)
    )]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tables merge per entry (`kafka_props`, and any nested table a setting may have),
    /// everything else, arrays of tables included, is replaced whole; each value keeps
    /// the source of the layer it came from.
    #[test]
    fn layers_merge_tables_per_entry_and_replace_the_rest() -> Result<(), toml::de::Error> {
        let (mut values, mut sources) = (toml::Table::new(), BTreeMap::new());
        let file = PathBuf::from("t.toml");
        let layers = [
            (
                "slot = 'a'\nprops = { x = '1', y = '2' }\nlist = [{ n = 1 }, { n = 2 }]",
                Source::Default,
            ),
            ("slot = 'b'\nprops = { y = '3' }\nlist = [{ n = 3 }]", Source::File(file.clone())),
            ("props = { z = '4' }", Source::Flag),
        ];
        for (text, source) in layers {
            merge(&mut values, &mut sources, text.parse()?, &|_| source.clone());
        }
        let expected: toml::Table =
            "slot = 'b'\nprops = { x = '1', y = '3', z = '4' }\nlist = [{ n = 3 }]".parse()?;
        assert_eq!(values, expected);
        assert_eq!(sources.get("slot"), Some(&Source::File(file.clone())));
        assert_eq!(sources.get("props.x"), Some(&Source::Default));
        assert_eq!(sources.get("props.y"), Some(&Source::File(file)));
        assert_eq!(sources.get("props.z"), Some(&Source::Flag));
        Ok(())
    }
}

//! Reading the decision configuration: SPEC 3's defaults, then `tape.toml`, then
//! `TAPE_*` environment variables, then `--set key=value` overrides, each layer replacing
//! only the keys it names. Unknown keys are errors naming the key; service tables
//! (`[database]`, `[redis]`, `[broker]`, `[daemon]`) are skipped here and read by
//! `services::config`.
//!
//! Pure: the caller reads the file and the environment and hands over their text.

use std::collections::BTreeMap;

use tape_events::Config;
use toml::{Table, Value};

/// The `tape.toml` tables that hold service settings, not decision keys.
pub const SERVICE_TABLES: &[&str] = &["database", "redis", "broker", "daemon"];

/// Why a configuration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{source_name}: not valid TOML: {message}")]
    Syntax { source_name: String, message: String },
    #[error("{source_name}: unknown config key {key:?}")]
    UnknownKey { source_name: String, key: String },
    #[error("{source_name}: config key {key:?} is a table; give its fields instead")]
    NotALeaf { source_name: String, key: String },
    #[error("invalid --set {0:?}: expected key=value, e.g. tiers.conservative.min_confidence=0.70")]
    SetSyntax(String),
    #[error("invalid config value for {key}: {message}")]
    Value { key: String, message: String },
    #[error(transparent)]
    Rule(#[from] tape_events::config::ConfigValueError),
}

/// The layers to merge over the defaults, in order.
#[derive(Debug, Clone, Default)]
pub struct Layers<'a> {
    /// `(name, text)` of a `tape.toml`.
    pub file: Option<(&'a str, &'a str)>,
    /// Environment variables (all of them; only `TAPE_<KEY>` for decision keys are used,
    /// with `__` for a dot: `TAPE_TIERS__MODERATE__MIN_CONFIDENCE`).
    pub env: BTreeMap<String, String>,
    /// `key=value` overrides.
    pub sets: &'a [String],
}

/// A configuration as the table the layers merge into.
fn to_table(config: &Config) -> Table {
    match Value::try_from(config) {
        Ok(Value::Table(table)) => table,
        other => panic!("Invariant: a config is a TOML table: {other:?}"),
    }
}

/// Reads the configuration from its layers and validates it.
///
/// # Errors
/// [`ConfigError`] naming the key (and the file, variable or `--set`) that is wrong.
pub fn load(layers: &Layers<'_>) -> Result<Config, ConfigError> {
    let mut merged = to_table(&Config::default());
    if let Some((name, text)) = layers.file {
        let mut table: Table = toml::from_str(text)
            .map_err(|e| ConfigError::Syntax { source_name: name.to_owned(), message: e.message().to_owned() })?;
        for service in SERVICE_TABLES {
            table.remove(*service);
        }
        merge(&mut merged, table, "", name)?;
    }
    for (var, text) in &layers.env {
        let Some(key) = var.strip_prefix("TAPE_") else { continue };
        let path = key.to_ascii_lowercase().replace("__", ".");
        if lookup(&merged, &path).is_some() {
            set_path(&mut merged, &path, parse_value(text), var)?;
        }
    }
    apply_set_args(&mut merged, layers.sets)?;
    finish(merged)
}

/// `base` with `key=value` overrides applied (what-if replay: `--set` over the
/// configuration in force), validated.
///
/// # Errors
/// [`ConfigError`] naming the key.
pub fn apply_sets(base: &Config, sets: &[String]) -> Result<Config, ConfigError> {
    let mut merged = to_table(base);
    apply_set_args(&mut merged, sets)?;
    finish(merged)
}

/// Applies `--set key=value` arguments, in order.
fn apply_set_args(merged: &mut Table, sets: &[String]) -> Result<(), ConfigError> {
    for set in sets {
        let (path, text) = set.split_once('=').ok_or_else(|| ConfigError::SetSyntax(set.clone()))?;
        set_path(merged, path.trim(), parse_value(text.trim()), &format!("--set {set}"))?;
    }
    Ok(())
}

/// The merged table as a validated `Config`; a wrong value names its key path.
fn finish(merged: Table) -> Result<Config, ConfigError> {
    let json = toml_to_json(Value::Table(merged));
    let config: Config = serde_path_to_error::deserialize(json)
        .map_err(|e| ConfigError::Value { key: e.path().to_string(), message: e.inner().to_string() })?;
    config.validate()?;
    Ok(config)
}

/// A `--set` or environment value: TOML when it parses as one (`0.70`, `8`, `[]`,
/// `"2h"`), else the text itself (`90m`).
fn parse_value(text: &str) -> Value {
    toml::from_str::<Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(text.to_owned()))
}

fn lookup<'a>(table: &'a Table, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut current = table.get(parts.next()?)?;
    for part in parts {
        current = current.as_table()?.get(part)?;
    }
    Some(current)
}

fn set_path(table: &mut Table, path: &str, value: Value, source_name: &str) -> Result<(), ConfigError> {
    let unknown = || ConfigError::UnknownKey { source_name: source_name.to_owned(), key: path.to_owned() };
    let (parents, leaf) = path.rsplit_once('.').map_or(("", path), |(p, l)| (p, l));
    let mut current = table;
    if !parents.is_empty() {
        for part in parents.split('.') {
            current = current.get_mut(part).and_then(Value::as_table_mut).ok_or_else(unknown)?;
        }
    }
    let slot = current.get_mut(leaf).ok_or_else(unknown)?;
    if slot.is_table() && !value.is_table() && leaf != "trading_window" {
        return Err(ConfigError::NotALeaf { source_name: source_name.to_owned(), key: path.to_owned() });
    }
    *slot = value;
    Ok(())
}

fn merge(base: &mut Table, overlay: Table, prefix: &str, source_name: &str) -> Result<(), ConfigError> {
    for (key, value) in overlay {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        let Some(slot) = base.get_mut(&key) else {
            return Err(ConfigError::UnknownKey { source_name: source_name.to_owned(), key: path });
        };
        match (slot, value) {
            // Tier tables merge field by field; a trading_window is replaced whole.
            (Value::Table(inner), Value::Table(over)) if path != "trading_window" => {
                merge(inner, over, &path, source_name)?;
            }
            (slot, value) => *slot = value,
        }
    }
    Ok(())
}

fn toml_to_json(value: Value) -> serde_json::Value {
    match value {
        Value::String(s) => serde_json::Value::String(s),
        Value::Integer(i) => serde_json::Value::from(i),
        Value::Float(f) => serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, serde_json::Value::Number),
        Value::Boolean(b) => serde_json::Value::Bool(b),
        Value::Datetime(d) => serde_json::Value::String(d.to_string()),
        Value::Array(items) => serde_json::Value::Array(items.into_iter().map(toml_to_json).collect()),
        Value::Table(table) => {
            serde_json::Value::Object(table.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn the_spec_example_overrides_only_what_it_names() {
        let text = "max_open_positions = 8\nrecommendation_max_age = \"90m\"\n[tiers.conservative]\nmin_confidence = \"0.70\"\n[database]\nurl = \"postgres://x\"\n";
        let config = load(&Layers { file: Some(("tape.toml", text)), ..Layers::default() }).unwrap();
        assert_eq!(config.max_open_positions, 8);
        assert_eq!(config.recommendation_max_age.secs, 5400);
        assert_eq!(config.tiers.conservative.min_confidence, d("0.70"));
        assert_eq!(config.tiers.conservative.max_position_pct, d("0.05"));
        assert_eq!(config.tiers.moderate, Config::default().tiers.moderate);
    }

    #[test]
    fn floats_and_strings_mean_the_same_and_holidays_can_be_emptied() {
        let a = load(&Layers {
            file: Some(("a", "slippage_bps = 10\nholidays = []\n[tiers.conservative]\nmax_portfolio_heat = 0.002\n")),
            ..Layers::default()
        })
        .unwrap();
        let b = load(&Layers {
            file: Some((
                "b",
                "slippage_bps = \"10\"\nholidays = []\n[tiers.conservative]\nmax_portfolio_heat = \"0.002\"\n",
            )),
            ..Layers::default()
        })
        .unwrap();
        assert_eq!(a, b);
        assert!(a.holidays.is_empty());
    }

    #[test]
    fn sets_and_env_layer_over_the_file() {
        let sets = vec!["tiers.moderate.min_confidence=0.7".to_owned(), "recommendation_max_age=90m".to_owned()];
        let env = BTreeMap::from([
            ("TAPE_MAX_OPEN_POSITIONS".to_owned(), "4".to_owned()),
            ("TAPE_DATABASE_URL".to_owned(), "postgres://ignored".to_owned()),
        ]);
        let config = load(&Layers { file: Some(("f", "max_open_positions = 8")), env, sets: &sets }).unwrap();
        assert_eq!(config.max_open_positions, 4);
        assert_eq!(config.tiers.moderate.min_confidence, d("0.7"));
        assert_eq!(config.recommendation_max_age.secs, 5400);
    }

    #[test]
    fn errors_name_the_key() {
        let e = load(&Layers { file: Some(("tape.toml", "max_open_positons = 3")), ..Layers::default() }).unwrap_err();
        assert_eq!(e.to_string(), "tape.toml: unknown config key \"max_open_positons\"");
        let e = load(&Layers { file: Some(("tape.toml", "[tiers.bold]\nmin_confidence = 0.5")), ..Layers::default() })
            .unwrap_err();
        assert_eq!(e.to_string(), "tape.toml: unknown config key \"tiers.bold\"");
        let e = load(&Layers { file: Some(("t", "max_open_positions = \"many\"")), ..Layers::default() }).unwrap_err();
        assert!(e.to_string().starts_with("invalid config value for max_open_positions"), "{e}");
        let e = load(&Layers { file: Some(("t", "[tiers.moderate]\nmin_confidence = \"1e-1\"")), ..Layers::default() })
            .unwrap_err();
        assert!(e.to_string().contains("tiers.moderate.min_confidence"), "{e}");
        let sets = vec!["nope=1".to_owned()];
        let e = load(&Layers { sets: &sets, ..Layers::default() }).unwrap_err();
        assert_eq!(e.to_string(), "--set nope=1: unknown config key \"nope\"");
        let sets = vec!["tiers.aggressive.stop_loss_pct=1.5".to_owned()];
        let e = load(&Layers { sets: &sets, ..Layers::default() }).unwrap_err();
        assert_eq!(e.to_string(), "invalid config tiers.aggressive.stop_loss_pct = 1.5: must be within (0, 1)");
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    #[test]
    fn the_shipped_example_file_is_the_defaults() {
        let text = include_str!("../../tape.toml.example");
        let config = load(&Layers { file: Some(("tape.toml.example", text)), ..Layers::default() }).unwrap();
        assert_eq!(config, Config::default());
    }
}

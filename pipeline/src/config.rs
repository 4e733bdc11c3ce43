//! All of auscult's settings in one place, with their documented defaults.
//!
//! One [`Config`] is read from a TOML file (`auscult --config FILE`), command-line flags
//! override single fields, and every component takes its part of it. A default is a
//! statement about what works out of the box, so each one says why it is what it is.

use crate::dsp::ChannelSelection;
pub use auscult_connectors::kafka::KafkaConfig;
pub use auscult_connectors::metrics_endpoint::MetricsConfig;
use auscult_schemas::FeatureSettings;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Everything the pipeline can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub features: FeatureConfig,
    pub model: ModelConfig,
    pub alerts: AlertConfig,
    pub stream: StreamConfig,
    pub archive: ArchiveSettings,
    pub state: StateConfig,
    pub kafka: KafkaConfig,
    pub metrics: MetricsConfig,
}

/// How audio becomes log-mel frames (librosa's parameter names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeatureConfig {
    /// Frame length in samples; 1024 is the DCASE baseline's.
    pub n_fft: usize,
    /// Samples between frames; 512 as in DCASE and MIMII.
    pub hop_length: usize,
    /// Mel bands; 128 as in DCASE (64 also works).
    pub n_mels: usize,
    /// Lowest band edge, Hz.
    pub fmin_hz: f64,
    /// Highest band edge, Hz; `None` is half the sample rate (librosa's default).
    pub fmax_hz: Option<f64>,
    /// Which channel of multi-channel audio is analysed; channel 0 as the baselines do.
    pub channel: ChannelSelection,
}

impl Default for FeatureConfig {
    fn default() -> Self {
        Self {
            n_fft: 1024,
            hop_length: 512,
            n_mels: 128,
            fmin_hz: 0.0,
            fmax_hz: None,
            channel: ChannelSelection::First,
        }
    }
}

impl FeatureConfig {
    /// The feature settings for audio at `sample_rate_hz`.
    pub fn settings_for(&self, sample_rate_hz: u32) -> FeatureSettings {
        let mut settings = FeatureSettings::new(sample_rate_hz, self.n_fft, self.hop_length, self.n_mels);
        settings.fmin_hz = self.fmin_hz;
        if let Some(fmax_hz) = self.fmax_hz {
            settings.fmax_hz = fmax_hz.min(f64::from(sample_rate_hz) / 2.0);
        }
        settings
    }
}

/// Most windows a scored span may hold.
pub const MAX_SPAN_WINDOWS: u32 = 64;

/// The per-machine normal profile and its threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Seconds of a machine's first audio that teach it what normal is: 5 minutes make about
    /// 150 windows and as many overlapping spans to learn from and calibrate on.
    pub learning_s: f64,
    /// Frames per window, the step at which the stream scores and archives; 64 frames of hop
    /// 512 at 16 kHz is 2.05 s.
    pub window_frames: u32,
    /// Windows per scored span: each window is scored on the statistics of the span of the
    /// last `span_windows` windows of continuous audio (4: 8.2 s). On real recordings a longer
    /// integration separates faults from normal sound much better (see BENCHMARKS.md); the
    /// price is that a span needs that much audio after a gap before it is scored.
    pub span_windows: u32,
    /// Most groups of neighbouring mel bands the model sees (128: every one of 128 mels its own;
    /// 64 would average them in pairs).
    pub model_bands: usize,
    /// Target rate of false warning alerts: the share of normal windows at which the alert
    /// rule opens one (1 in 1,000, about one an hour of normal sound). The threshold is the
    /// per-span quantile that gives this rate under the `open_k` of `open_n` rule (1 span in 54).
    pub false_alarm_rate: f64,
    /// Target rate of false alarms, as `false_alarm_rate` (1 in 100,000 windows).
    pub alarm_false_alarm_rate: f64,
    /// Standard deviation added (as variance) to every model feature, dB, so that a band that
    /// never moved while learning cannot make any later change look infinitely anomalous.
    pub min_std_db: f64,
    /// Most learning spans kept to calibrate the threshold and find the directions of coherent
    /// variation (bounds memory per machine); they are held out in contiguous folds.
    pub calibration_windows_max: usize,
    /// Whether the profile keeps following slow changes of normal sound after learning.
    pub adapt: bool,
    /// Windows over which adaptation forgets (an exponential memory of about an hour of 2 s windows).
    pub adapt_span_windows: f64,
    /// Only windows scoring below this fraction of the warning threshold adapt the profile (1:
    /// every window not over it while no alert is open). The threshold sits where about 1 normal
    /// span in 54 crosses it, so a lower fraction refuses many normal spans and drift outruns
    /// the profile.
    pub adapt_below_fraction: f64,
    /// Bands named in each alert's explanation.
    pub top_bands: usize,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            learning_s: 300.0,
            window_frames: 64,
            span_windows: 4,
            model_bands: 128,
            false_alarm_rate: 1e-3,
            alarm_false_alarm_rate: 1e-5,
            min_std_db: 0.25,
            calibration_windows_max: 64,
            adapt: true,
            adapt_span_windows: 1800.0,
            adapt_below_fraction: 1.0,
            top_bands: 3,
        }
    }
}

/// Hysteresis of the alert state machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertConfig {
    /// An alert opens when `open_k` of the last `open_n` windows are over a threshold.
    pub open_k: usize,
    /// See `open_k`.
    pub open_n: usize,
    /// An alert closes after this many windows in a row below the warning threshold.
    pub close_m: usize,
}

impl Default for AlertConfig {
    fn default() -> Self {
        Self { open_k: 2, open_n: 3, close_m: 3 }
    }
}

/// How sources cut audio and how time is grouped into epochs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamConfig {
    /// Audio per chunk, ms; what an edge agent sends in one message.
    pub chunk_ms: u32,
    /// Capture time per timely epoch, ms: sinks finalize their output once per epoch.
    pub epoch_ms: u64,
    /// Capture time of the first sample of files and simulated machines (RFC 3339), since
    /// WAV files carry no capture time of their own.
    pub start_time: String,
    /// Most machines one run keeps state for; more are refused and counted.
    pub max_machines: usize,
    /// Capture time between checkpoints of the per-machine state, s (with `run --state`);
    /// offsets are committed at the same boundaries.
    pub checkpoint_s: u64,
    /// Wall time after which a Kafka-fed worker whose partitions are all read to their end
    /// and bring nothing counts as idle, ms: it stops holding the frontier back and follows
    /// the epoch of the busiest worker (Flink's `withIdleness`).
    pub idle_after_ms: u64,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            chunk_ms: 1000,
            epoch_ms: 10_000,
            start_time: "2026-01-01T00:00:00Z".to_owned(),
            max_machines: 100_000,
            checkpoint_s: 60,
            idle_after_ms: 2_000,
        }
    }
}

/// The Parquet archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArchiveSettings {
    /// Epochs per archive file batch (a file is also cut at `max_rows_per_file`).
    pub roll_epochs: u64,
    /// Most rows in one file.
    pub max_rows_per_file: usize,
    /// zstd level.
    pub zstd_level: i32,
    /// Client options of an object-store archive (`object_store` keys: `aws_endpoint`,
    /// `aws_allow_http`, `aws_region`, `google_service_account`, `azure_storage_account_name`,
    /// ...), over what the environment sets.
    #[serde(deserialize_with = "auscult_connectors::kafka::config::text_map")]
    pub store_options: BTreeMap<String, String>,
}

impl Default for ArchiveSettings {
    fn default() -> Self {
        Self { roll_epochs: 6, max_rows_per_file: 250_000, zstd_level: 3, store_options: BTreeMap::new() }
    }
}

/// Where a Kafka-fed run checkpoints each machine's state, so that a restart continues where
/// the last run stopped instead of learning every machine again (`run --state DIR|kafka`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StateConfig {
    /// `none`; `folder` (`dir`, which every process must see); or `kafka`, the compacted topic
    /// `kafka.state_topic`, which needs no shared disk.
    pub backend: StateBackend,
    /// The folder of the `folder` backend.
    pub dir: Option<std::path::PathBuf>,
    /// Longest record on the state topic, bytes; a longer state is split in parts. Half of
    /// Kafka's default `message.max.bytes` (1 MiB): a machine's state (about 85 KB, at most
    /// 256 KiB) is one record.
    pub max_record_bytes: usize,
}

/// Where state checkpoints go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StateBackend {
    #[default]
    None,
    Folder,
    Kafka,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self { backend: StateBackend::None, dir: None, max_record_bytes: 512 * 1024 }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("config file {path} is not valid: {reason}")]
    Parse { path: String, reason: String },
    #[error("config value {field} = {value} is not allowed: {reason}")]
    Invalid { field: &'static str, value: String, reason: &'static str },
    #[error("environment variable {variable}: {reason}")]
    Environment { variable: String, reason: String },
}

/// The prefix of environment variables that override settings: `AUSCULT_KAFKA__BROKERS` is
/// `kafka.brokers`; sections and keys are separated by a double underscore.
pub const ENV_PREFIX: &str = "AUSCULT_";

impl Config {
    /// The effective configuration: the TOML file if one is given, then every environment
    /// variable `AUSCULT_SECTION__KEY` (from `env`) on top of it, then the checks. A value is
    /// read as TOML (`5000`, `true`, `0.5`, `["a", "b"]`) or else taken as text, so
    /// `AUSCULT_KAFKA__BROKERS=host:9092` needs no quotes. Variables without a double
    /// underscore (`AUSCULT_TEST_PYTHON`) are not settings and are ignored.
    pub fn load(
        path: Option<&std::path::Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let (mut table, source) = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
                let table: toml::Table = toml::from_str(&text).map_err(|error| ConfigError::Parse {
                    path: path.display().to_string(),
                    reason: error.message().to_owned(),
                })?;
                (table, path.display().to_string())
            }
            None => (toml::Table::new(), "the defaults".to_owned()),
        };
        let mut overridden = Vec::new();
        let mut env: Vec<(String, String)> = env.into_iter().collect();
        env.sort();
        for (variable, value) in env {
            let Some(path) = variable.strip_prefix(ENV_PREFIX).filter(|rest| rest.contains("__")) else { continue };
            let keys: Vec<String> = path.split("__").map(str::to_lowercase).collect();
            set_path(&mut table, &keys, env_value(&value))
                .map_err(|reason| ConfigError::Environment { variable: variable.clone(), reason })?;
            overridden.push(variable);
        }
        let config: Config = toml::Value::Table(table).try_into().map_err(|error: toml::de::Error| {
            let source =
                if overridden.is_empty() { source.clone() } else { format!("{source} + {}", overridden.join(", ")) };
            ConfigError::Parse { path: source, reason: error.message().to_owned() }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The configuration as TOML, every field written out (`auscult config`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|error| format!("# cannot write the configuration: {error}\n"))
    }

    /// Reads a TOML file; missing fields keep their defaults.
    pub fn from_toml_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        Self::load(Some(path), std::iter::empty())
    }

    /// Checks the values that the types alone do not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, value: String, reason| Err(ConfigError::Invalid { field, value, reason });
        let model = &self.model;
        if !(model.false_alarm_rate > 0.0 && model.false_alarm_rate < 0.5) {
            return invalid("model.false_alarm_rate", model.false_alarm_rate.to_string(), "must be in (0, 0.5)");
        }
        if !(model.alarm_false_alarm_rate > 0.0 && model.alarm_false_alarm_rate <= model.false_alarm_rate) {
            return invalid(
                "model.alarm_false_alarm_rate",
                model.alarm_false_alarm_rate.to_string(),
                "must be in (0, false_alarm_rate]",
            );
        }
        if model.window_frames == 0 {
            return invalid("model.window_frames", "0".to_owned(), "must be at least 1");
        }
        if model.span_windows == 0 || model.span_windows > MAX_SPAN_WINDOWS {
            return invalid("model.span_windows", model.span_windows.to_string(), "must be 1 to 64");
        }
        if model.model_bands == 0 {
            return invalid("model.model_bands", "0".to_owned(), "must be at least 1");
        }
        if !(model.min_std_db.is_finite() && model.min_std_db > 0.0) {
            return invalid("model.min_std_db", model.min_std_db.to_string(), "must be a positive number of dB");
        }
        if !(model.learning_s.is_finite() && model.learning_s > 0.0) {
            return invalid("model.learning_s", model.learning_s.to_string(), "must be a positive number of seconds");
        }
        if model.calibration_windows_max < 8 {
            return invalid(
                "model.calibration_windows_max",
                model.calibration_windows_max.to_string(),
                "must be at least 8",
            );
        }
        let alerts = &self.alerts;
        if alerts.open_k == 0 || alerts.open_k > alerts.open_n || alerts.close_m == 0 {
            return invalid("alerts", format!("{alerts:?}"), "need 1 <= open_k <= open_n and close_m >= 1");
        }
        if self.stream.chunk_ms == 0 || self.stream.epoch_ms == 0 || self.stream.checkpoint_s == 0 {
            return invalid(
                "stream",
                format!("{:?}", self.stream),
                "chunk_ms, epoch_ms and checkpoint_s must be positive",
            );
        }
        if self.state.backend == StateBackend::Folder && self.state.dir.is_none() {
            return invalid("state.dir", "none".to_owned(), "the folder backend needs a folder");
        }
        if self.state.max_record_bytes < 4096 {
            return invalid("state.max_record_bytes", self.state.max_record_bytes.to_string(), "must be at least 4096");
        }
        if auscult_schemas::time::parse_rfc3339(&self.stream.start_time).is_none() {
            return invalid(
                "stream.start_time",
                self.stream.start_time.clone(),
                "must be RFC 3339, e.g. 2026-01-01T00:00:00Z",
            );
        }
        Ok(())
    }

    /// `stream.start_time` in microseconds since the epoch (validated).
    pub fn start_time_us(&self) -> i64 {
        auscult_schemas::time::parse_rfc3339(&self.stream.start_time).unwrap_or(0)
    }
}

/// A value from the environment: TOML if it parses as a value, else the text itself.
fn env_value(text: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("value = {text}"))
        .ok()
        .and_then(|mut table| table.remove("value"))
        .unwrap_or_else(|| toml::Value::String(text.to_owned()))
}

/// Sets `keys` (a section path, then a key) in `table`, making the sections on the way.
fn set_path(table: &mut toml::Table, keys: &[String], value: toml::Value) -> Result<(), String> {
    let (key, sections) = keys.split_last().ok_or("names no setting")?;
    let mut table = table;
    for section in sections {
        let entry = table.entry(section.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry.as_table_mut().ok_or_else(|| format!("{section} is a value, not a section"))?;
    }
    if key.is_empty() {
        return Err("names no setting".to_owned());
    }
    table.insert(key.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_configuration_block_is_the_defaults() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
        let section = &readme[readme.find("### Configuration").expect("the README has the section")..];
        let start = section.find("```toml\n").expect("with a TOML block") + "```toml\n".len();
        let block = &section[start..start + section[start..].find("```").expect("closed")];
        let config: Config = toml::from_str(block).expect("the README block parses, every key known");
        assert_eq!(config, Config::default());
    }

    #[test]
    fn a_partial_toml_keeps_the_other_defaults() {
        let config: Config = toml::from_str("[model]\nlearning_s = 30.0\n[features]\nn_mels = 64\n").unwrap();
        assert_eq!(config.model.learning_s, 30.0);
        assert_eq!(config.features.n_mels, 64);
        assert_eq!(config.features.n_fft, 1024);
        assert_eq!(config.alerts, AlertConfig::default());
        config.validate().unwrap();
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(toml::from_str::<Config>("[model]\nlearnig_s = 3.0\n").is_err());
        let mut config = Config::default();
        config.alerts.open_k = 4;
        assert!(matches!(config.validate(), Err(ConfigError::Invalid { field: "alerts", .. })));
    }

    #[test]
    fn environment_variables_override_the_file_and_are_named_when_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auscult.toml");
        std::fs::write(&path, "[kafka]\nbrokers = \"file:9092\"\n[stream]\nmax_machines = 10\n").unwrap();
        let env =
            |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
        let config = Config::load(
            Some(&path),
            env(&[
                ("AUSCULT_KAFKA__BROKERS", "env:9092"),
                ("AUSCULT_MODEL__LEARNING_S", "30"),
                ("AUSCULT_TEST_PYTHON", "/not/a/setting"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(config.kafka.brokers, "env:9092", "text needs no quotes");
        assert_eq!(config.model.learning_s, 30.0);
        assert_eq!(config.stream.max_machines, 10, "the file's own value stays");
        // Client options are text, though a variable's `true` or `5` reads as TOML.
        let options = Config::load(
            None,
            env(&[
                ("AUSCULT_ARCHIVE__STORE_OPTIONS__AWS_ALLOW_HTTP", "true"),
                ("AUSCULT_KAFKA__PROPERTIES__LINGER_MS", "5"),
            ]),
        )
        .unwrap();
        assert_eq!(options.archive.store_options["aws_allow_http"], "true");
        assert_eq!(options.kafka.properties["linger_ms"], "5");
        let unknown = Config::load(None, env(&[("AUSCULT_KAFKA__BROKRES", "x")])).unwrap_err().to_string();
        assert!(unknown.contains("AUSCULT_KAFKA__BROKRES") && unknown.contains("brokres"), "{unknown}");
        let bad = Config::load(None, env(&[("AUSCULT_STREAM__MAX_MACHINES", "many")])).unwrap_err().to_string();
        assert!(bad.contains("AUSCULT_STREAM__MAX_MACHINES"), "{bad}");
        let checked = Config::load(None, env(&[("AUSCULT_MODEL__FALSE_ALARM_RATE", "0.9")])).unwrap_err().to_string();
        assert!(checked.contains("model.false_alarm_rate"), "{checked}");
    }

    #[test]
    fn the_printed_configuration_reads_back_as_the_same() {
        let config = Config::load(None, vec![("AUSCULT_KAFKA__BROKERS".to_owned(), "h:1".to_owned())]).unwrap();
        let again: Config = toml::from_str(&config.to_toml()).unwrap();
        assert_eq!(again, config);
    }
}

//! librdkafka properties the user passes through (`[kafka.properties]` in the TOML, or
//! `--kafka-property KEY=VALUE`): TLS, SASL and any other client setting a real cluster needs,
//! applied to every client auscult makes (consumers, producers, admin). A value written as
//! `${NAME}` is read from the environment variable `NAME`, so secrets need not sit in files.
//! The few settings auscult's delivery guarantee rests on cannot be changed.
//!
//! Set once per process, before the first client is made, like a logger.

use rdkafka::config::ClientConfig;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// Settings the delivery guarantee depends on (offsets committed only after outputs are durable,
/// acks=all producers that keep a partition's order, end-of-partition events for the idle rule).
const PROTECTED: [&str; 6] = [
    "enable.auto.commit",
    "enable.partition.eof",
    "enable.idempotence",
    "acks",
    "max.in.flight.requests.per.connection",
    "bootstrap.servers",
];

static PROPERTIES: OnceLock<BTreeMap<String, String>> = OnceLock::new();

/// Why a property was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PropertyError {
    #[error("kafka property {key}: auscult sets it itself (its delivery guarantee depends on it){hint}")]
    Protected { key: String, hint: &'static str },
    #[error("kafka property {key}: environment variable {variable} is not set")]
    MissingVariable { key: String, variable: String },
    #[error("kafka property '{text}' is not KEY=VALUE")]
    NotKeyValue { text: String },
}

/// Parses one `KEY=VALUE` flag.
pub fn parse_property(text: &str) -> Result<(String, String), PropertyError> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_owned(), value.to_owned())),
        _ => Err(PropertyError::NotKeyValue { text: text.to_owned() }),
    }
}

/// Checks `properties`, reads `${NAME}` values from the environment (through `env`), and
/// returns them as they will be applied.
pub fn resolve(
    properties: &BTreeMap<String, String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, PropertyError> {
    let mut resolved = BTreeMap::new();
    for (key, value) in properties {
        if PROTECTED.contains(&key.as_str()) {
            let hint = if key == "bootstrap.servers" { ": give --brokers or kafka.brokers" } else { "" };
            return Err(PropertyError::Protected { key: key.clone(), hint });
        }
        let value = match value.strip_prefix("${").and_then(|rest| rest.strip_suffix('}')) {
            Some(variable) => env(variable)
                .ok_or_else(|| PropertyError::MissingVariable { key: key.clone(), variable: variable.to_owned() })?,
            None => value.clone(),
        };
        resolved.insert(key.clone(), value);
    }
    Ok(resolved)
}

/// Makes `properties` (checked and resolved from the process environment) the ones every
/// client of this process gets; the first call wins.
pub fn use_client_properties(properties: &BTreeMap<String, String>) -> Result<(), PropertyError> {
    let resolved = resolve(properties, |name| std::env::var(name).ok())?;
    let _ = PROPERTIES.set(resolved);
    Ok(())
}

/// Adds the user's properties to a client's configuration (after auscult's own, so a user's
/// tuning wins, except for the protected ones, which [`resolve`] refuses).
pub(crate) trait WithUserProperties {
    fn with_user_properties(&mut self) -> &mut Self;
}

impl WithUserProperties for ClientConfig {
    fn with_user_properties(&mut self) -> &mut Self {
        for (key, value) in PROPERTIES.get().into_iter().flatten() {
            self.set(key, value);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn values_in_braces_come_from_the_environment_and_a_missing_one_is_named() {
        let env = |name: &str| (name == "KAFKA_SECRET").then(|| "s3cret".to_owned());
        let resolved = resolve(&map(&[("sasl.password", "${KAFKA_SECRET}"), ("security.protocol", "SASL_SSL")]), env);
        assert_eq!(resolved.unwrap(), map(&[("sasl.password", "s3cret"), ("security.protocol", "SASL_SSL")]));
        let missing = resolve(&map(&[("sasl.password", "${NOPE}")]), env).unwrap_err().to_string();
        assert_eq!(missing, "kafka property sasl.password: environment variable NOPE is not set");
    }

    #[test]
    fn the_guarantee_s_own_settings_are_refused_and_flags_must_be_key_value() {
        let error = resolve(&map(&[("enable.auto.commit", "true")]), |_| None).unwrap_err();
        assert!(error.to_string().starts_with("kafka property enable.auto.commit: auscult sets it itself"));
        assert_eq!(
            parse_property("ssl.ca.location=/etc/ca.pem").unwrap(),
            ("ssl.ca.location".into(), "/etc/ca.pem".into())
        );
        assert_eq!(parse_property("a=b=c").unwrap().1, "b=c");
        assert!(parse_property("no-equals").is_err() && parse_property("=x").is_err());
    }
}

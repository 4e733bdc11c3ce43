//! librdkafka properties pass through from the TOML and from flags to every Kafka client (the
//! way a secure cluster's TLS and SASL settings reach auscult), secrets can come from the
//! environment, and a property that cannot work is refused in one line that names it.

mod common;

use common::broker::Broker;
use common::{auscult, run_ok};

/// Runs `auscult` with `args`, expecting it to fail; returns its stderr.
fn fails(args: &[&str]) -> String {
    let output = auscult().args(args).output().unwrap();
    assert!(!output.status.success(), "{args:?} succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_property_librdkafka_does_not_know_is_refused_naming_it() {
    let stderr = fails(&["topics", "--brokers", "127.0.0.1:1", "--kafka-property", "no.such.property=1"]);
    assert!(stderr.contains("no.such.property"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn the_settings_the_guarantee_rests_on_and_missing_secrets_are_refused_before_connecting() {
    let stderr = fails(&["topics", "--brokers", "127.0.0.1:1", "--kafka-property", "enable.auto.commit=true"]);
    assert!(stderr.contains("kafka property enable.auto.commit: auscult sets it itself"), "{stderr}");
    let stderr = auscult()
        .args(["topics", "--brokers", "127.0.0.1:1", "--kafka-property", "sasl.password=${AUSCULT_TEST_NOT_SET}"])
        .env_remove("AUSCULT_TEST_NOT_SET")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&stderr.stderr);
    assert!(text.contains("environment variable AUSCULT_TEST_NOT_SET is not set"), "{text}");
    let stderr = fails(&["topics", "--kafka-property", "no-equals-sign"]);
    assert!(stderr.contains("'no-equals-sign' is not KEY=VALUE"), "{stderr}");
}

#[test]
fn tls_properties_from_the_toml_reach_librdkafka_built_with_ssl() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("auscult.toml");
    std::fs::write(
        &config,
        "[kafka.properties]\n\"security.protocol\" = \"ssl\"\n\"ssl.ca.location\" = \"/nonexistent/ca.pem\"\n",
    )
    .unwrap();
    let stderr = fails(&["topics", "--brokers", "127.0.0.1:1", "--config", config.to_str().unwrap()]);
    // librdkafka itself reads the CA file (it has TLS), and says why it cannot.
    assert!(stderr.contains("ssl.ca.location") || stderr.contains("/nonexistent/ca.pem"), "{stderr}");
    assert!(!stderr.contains("not supported"), "librdkafka was built without TLS: {stderr}");
}

#[test]
fn valid_properties_are_applied_to_the_admin_producer_and_consumer_clients_of_a_real_broker() {
    let broker = Broker::start();
    let property = |kv: &'static str| ["--kafka-property", kv];
    let props: Vec<&str> =
        [property("client.rack=line-3"), property("socket.keepalive.enable=${AUSCULT_TEST_KEEPALIVE}")].concat();
    let with_env = |command: &mut std::process::Command| {
        command.env("AUSCULT_TEST_KEEPALIVE", "true");
    };
    let mut topics = auscult();
    topics.args(["topics", "--brokers", &broker.address, "--partitions", "2"]).args(&props);
    with_env(&mut topics);
    run_ok(&mut topics);
    let mut agent = auscult();
    agent
        .args(["agent", "--brokers", &broker.address, "--simulate", "1", "--duration", "20", "--speed", "0"])
        .args(["--start-time", "2026-01-01T00:00:00Z"])
        .args(&props);
    with_env(&mut agent);
    let sent = run_ok(&mut agent);
    assert!(
        String::from_utf8_lossy(&sent.stderr).contains("20 delivered"),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.json");
    let mut run = auscult();
    run.args(["run", "--brokers", &broker.address, "--stop-when-idle", "2", "--learning-s", "10"])
        .arg("--summary-json")
        .arg(&summary)
        .args(&props);
    with_env(&mut run);
    run_ok(&mut run);
    let totals = &common::read_json(&summary)["totals"];
    assert_eq!(totals["chunks_read"], 20, "{totals}");
}

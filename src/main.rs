//! The `auscult` command line: parse arguments and configuration, call into the crates, print
//! summaries. No detection logic lives here.

mod commands;
mod npy;
mod summary;

use anyhow::Result;
use auscult_pipeline::Config;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// auscult listens to industrial machines, learns each one's normal sound and flags anomalies as a stream.
#[derive(Debug, Parser)]
#[command(name = "auscult", version, about)]
struct Cli {
    /// TOML configuration file (every field optional; see README "Configuration").
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log filter (error, warn, info, debug, or a tracing filter); also RUST_LOG.
    #[arg(long, global = true, default_value = "warn", value_name = "FILTER")]
    log: String,
    /// Log lines as text, or as one JSON object per line for log shippers.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// A librdkafka property for every Kafka client (TLS, SASL, ...), `KEY=VALUE`, repeatable;
    /// on top of `[kafka.properties]`. A value `${NAME}` is read from the environment.
    #[arg(long = "kafka-property", global = true, value_name = "KEY=VALUE", value_parser = parse_property_flag)]
    kafka_properties: Vec<(String, String)>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the streaming pipeline on WAV files or simulated machines.
    Run(commands::run::RunArgs),
    /// Edge agent: send audio (WAV files, stdin PCM, simulated machines) to Kafka as chunks.
    Agent(commands::agent::AgentArgs),
    /// Create the audio, dead-letter, anomaly and machine-registry topics on a Kafka cluster.
    Topics(commands::topics::TopicsArgs),
    /// Write the log-mel matrix of one WAV file as CSV or .npy.
    Features(commands::features::FeaturesArgs),
    /// Write a corpus of simulated machines as WAV files in the DCASE 2020 layout.
    Simulate(commands::simulate::SimulateArgs),
    /// Simulate a few machines (some failing), run the pipeline on 2 workers, print a summary.
    Demo(commands::demo::DemoArgs),
    /// Detection quality (AUC, pAUC, false alarms) on a labelled DCASE or MIMII corpus.
    Eval(commands::eval::EvalArgs),
    /// Write one self-contained HTML page of the fleet, its alerts and an evaluation.
    Report(commands::report::ReportArgs),
    /// Print the effective configuration (defaults, then --config, then AUSCULT_* variables) as TOML.
    Config,
    /// Print a shell completion script (e.g. `auscult completions bash > /etc/bash_completion.d/auscult`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log));
    // Colours only on a terminal: logs that go to a file or a collector stay plain text.
    let colours = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    match cli.log_format {
        LogFormat::Text => logs.with_ansi(colours).init(),
        LogFormat::Json => logs.json().with_current_span(false).init(),
    }
    if let Err(error) = dispatch(cli) {
        // A reader that went away (`auscult features ... -o - | head`) ends the program
        // quietly, as Unix tools do.
        if is_broken_pipe(&error) {
            return;
        }
        eprintln!("auscult: {}", one_line(&error));
        std::process::exit(1);
    }
}

/// The error and its causes on one line, each cause once: many errors (librdkafka's, and ours
/// that wrap them) already put their cause in their own message, and `{:#}` would repeat it.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn parse_property_flag(text: &str) -> Result<(String, String), String> {
    auscult_connectors::kafka::parse_property(text).map_err(|error| error.to_string())
}

fn dispatch(cli: Cli) -> Result<()> {
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(
            shell,
            &mut <Cli as clap::CommandFactory>::command(),
            "auscult",
            &mut std::io::stdout(),
        );
        return Ok(());
    }
    let mut config = Config::load(cli.config.as_deref(), std::env::vars())?;
    config.kafka.properties.extend(cli.kafka_properties.iter().cloned());
    auscult_connectors::kafka::use_client_properties(&config.kafka.properties)?;
    match cli.command {
        Command::Run(args) => commands::run::execute(args, config),
        Command::Agent(args) => {
            let settings = commands::agent::AgentSettings {
                simulated_fault_onset_s: config.model.learning_s + commands::run::FAULT_AFTER_LEARNING_S,
                chunk_ms: config.stream.chunk_ms,
                kafka: config.kafka,
                metrics: config.metrics,
            };
            commands::agent::execute(args, settings)
        }
        Command::Topics(args) => commands::topics::execute(args, config),
        Command::Features(args) => commands::features::execute(args, config),
        Command::Simulate(args) => commands::simulate::execute(args),
        Command::Demo(args) => commands::demo::execute(args, config),
        Command::Eval(args) => commands::eval::execute(args, config),
        Command::Report(args) => commands::report::execute(args, config),
        Command::Config => {
            print!("{}", config.to_toml());
            Ok(())
        }
        // Written above, before the configuration is read.
        Command::Completions { .. } => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::one_line;

    /// An error that puts its cause in its own message and also gives it as its source.
    #[derive(Debug)]
    struct Wrapping {
        source: std::io::Error,
    }

    impl std::fmt::Display for Wrapping {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "cannot read topic t: {}", self.source)
        }
    }

    impl std::error::Error for Wrapping {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let inner = std::io::Error::other("broker transport failure");
        let error = anyhow::Error::new(Wrapping { source: inner }).context("auscult run");
        assert_eq!(one_line(&error), "auscult run: cannot read topic t: broker transport failure");
        let plain = anyhow::anyhow!("no such file").context("reading x.wav");
        assert_eq!(one_line(&plain), "reading x.wav: no such file");
    }
}

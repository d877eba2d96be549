//! The command line of `cargo xtask bench`.

use super::*;

/// Command-line options: `cargo xtask bench [--duration S] [--warmup S] [--levels 8,32,128]
/// [--set KEY=VALUE]... [--no-record] [--relay-only]`.
#[derive(Debug, Clone)]
pub(super) struct Options {
    pub(super) duration: Duration,
    pub(super) warmup: Duration,
    pub(super) levels: Vec<usize>,
    /// Extra environment for chat-api (tuning: `DB_MAX_CONNECTIONS`, `RELAY_*`).
    pub(super) chat_api_env: Vec<(String, String)>,
    pub(super) record: bool,
    /// Only the relay's cost: one user's drain and relay on/off (printed, not recorded).
    pub(super) relay_only: bool,
    /// Internal: the release build of the bench measuring, started by the debug one.
    pub(super) measure: bool,
    /// Internal: the time left for measuring, and how long the build took.
    pub(super) budget: Option<Duration>,
    pub(super) build: Duration,
}

/// The command line, as clap reads it.
#[derive(Debug, clap::Parser)]
#[command(
    name = "cargo xtask bench",
    about = "The benchmark of the whole pipeline on the real stack (release build); appends \
             its report to BENCHMARKS.md"
)]
struct Cli {
    /// Seconds measured per phase.
    #[arg(long, value_name = "S", default_value = "20", value_parser = positive_seconds)]
    duration: Duration,
    /// Seconds of warm-up before each phase.
    #[arg(long, value_name = "S", default_value = "5", value_parser = seconds)]
    warmup: Duration,
    /// Concurrency levels of the API phases.
    #[arg(long, value_name = "N,N,...", value_delimiter = ',', default_value = "8,32,128",
          value_parser = positive_count)]
    levels: Vec<usize>,
    /// Extra environment for chat-api (tuning: DB_MAX_CONNECTIONS, RELAY_*); repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = key_value)]
    set: Vec<(String, String)>,
    /// Print the report without appending it to BENCHMARKS.md.
    #[arg(long = "no-record")]
    no_record: bool,
    /// Measure only what publishing costs (one user's drain, relay on and off) and print
    /// it, without recording: for working on the relay.
    #[arg(long = "relay-only")]
    relay_only: bool,
    /// Internal: the release build of the bench measuring, started by the debug one.
    #[arg(long, hide = true)]
    measure: bool,
    /// Internal: the time left for measuring.
    #[arg(long = "budget-ms", hide = true, value_parser = milliseconds)]
    budget: Option<Duration>,
    /// Internal: how long the build took.
    #[arg(long = "build-ms", hide = true, default_value = "0", value_parser = milliseconds)]
    build: Duration,
}

fn seconds(text: &str) -> Result<Duration, String> {
    text.trim()
        .parse()
        .map(Duration::from_secs)
        .map_err(|_| format!("{text:?} is not a whole number of seconds"))
}

fn positive_seconds(text: &str) -> Result<Duration, String> {
    seconds(text).and_then(|d| {
        if d.is_zero() {
            Err("must be at least 1 second".to_owned())
        } else {
            Ok(d)
        }
    })
}

fn positive_count(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "{text:?} is not a concurrency above 0 (such as 8,32,128)"
        )),
    }
}

fn key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))
}

fn milliseconds(text: &str) -> Result<Duration, String> {
    text.parse()
        .map(Duration::from_millis)
        .map_err(|_| format!("{text:?} is not a number of milliseconds"))
}

impl Options {
    /// Parses `cargo xtask bench`'s arguments; `--help` prints the usage and exits.
    pub(super) fn parse(args: &[String]) -> Result<Options> {
        use clap::Parser as _;
        let cli = match Cli::try_parse_from(
            std::iter::once("cargo xtask bench").chain(args.iter().map(String::as_str)),
        ) {
            Ok(cli) => cli,
            Err(err) if !err.use_stderr() => err.exit(),
            // clap's message without its own `error: ` (main adds one).
            Err(err) => bail!(
                "{}",
                err.render()
                    .to_string()
                    .trim_start_matches("error: ")
                    .trim_end()
            ),
        };
        Ok(Options {
            duration: cli.duration,
            warmup: cli.warmup,
            levels: cli.levels,
            chat_api_env: cli.set,
            record: !cli.no_record && !cli.relay_only,
            relay_only: cli.relay_only,
            measure: cli.measure,
            budget: cli.budget,
            build: cli.build,
        })
    }
}

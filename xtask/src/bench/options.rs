//! The command line of `cargo xtask bench`.

use super::*;

/// Command-line options: `cargo xtask bench [--duration S] [--warmup S] [--levels 8,32,128]
/// [--set KEY=VALUE]... [--no-record]`.
#[derive(Debug, Clone)]
pub(super) struct Options {
    pub(super) duration: Duration,
    pub(super) warmup: Duration,
    pub(super) levels: Vec<usize>,
    /// Extra environment for chat-api (tuning: `DB_MAX_CONNECTIONS`, `RELAY_*`).
    pub(super) chat_api_env: Vec<(String, String)>,
    pub(super) record: bool,
    /// Internal: the release build of `xtask` measuring, started by the debug one.
    pub(super) measure: bool,
    /// Internal: the time left for measuring, and how long the build took.
    pub(super) budget: Option<Duration>,
    pub(super) build: Duration,
}

impl Options {
    pub(super) fn parse(args: &[String]) -> Result<Options> {
        let mut opts = Options {
            duration: Duration::from_secs(20),
            warmup: Duration::from_secs(5),
            levels: vec![8, 32, 128],
            chat_api_env: Vec::new(),
            record: true,
            measure: false,
            budget: None,
            build: Duration::ZERO,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
            match arg.as_str() {
                "--duration" => {
                    opts.duration = Duration::from_secs(
                        value("--duration")?
                            .parse()
                            .context("--duration: seconds")?,
                    )
                }
                "--warmup" => {
                    opts.warmup = Duration::from_secs(
                        value("--warmup")?.parse().context("--warmup: seconds")?,
                    )
                }
                "--levels" => {
                    opts.levels = value("--levels")?
                        .split(',')
                        .map(|l| {
                            l.trim()
                                .parse::<usize>()
                                .context("--levels: numbers such as 8,32,128")
                        })
                        .collect::<Result<_>>()?;
                }
                "--set" => {
                    let kv = value("--set")?;
                    let (k, v) = kv.split_once('=').context("--set takes KEY=VALUE")?;
                    opts.chat_api_env.push((k.to_owned(), v.to_owned()));
                }
                "--no-record" => opts.record = false,
                "--measure" => opts.measure = true,
                "--budget-ms" => {
                    opts.budget = Some(Duration::from_millis(
                        value("--budget-ms")?.parse().context("--budget-ms")?,
                    ))
                }
                "--build-ms" => {
                    opts.build =
                        Duration::from_millis(value("--build-ms")?.parse().context("--build-ms")?)
                }
                other => bail!(
                    "unknown bench option {other:?}; options: --duration S, --warmup S, --levels 8,32,128, --set KEY=VALUE, --no-record"
                ),
            }
        }
        if opts.levels.is_empty() || opts.levels.contains(&0) {
            bail!("--levels needs at least one concurrency above 0");
        }
        if opts.duration.is_zero() {
            bail!("--duration must be at least 1 second");
        }
        Ok(opts)
    }
}

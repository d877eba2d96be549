//! A service's `/metrics`, read with the official Prometheus Python client's text parser
//! (`tools/metrics-parse/metrics-parse.sh`, which installs it on first use).

use std::{collections::HashMap, time::Duration};

use anyhow::{Context as _, Result, ensure};
use serde::Deserialize;

use crate::Env;

/// What the parser read: each family's type and every sample.
#[derive(Debug, Deserialize)]
pub struct Scraped {
    pub families: HashMap<String, String>,
    samples: Vec<(String, HashMap<String, String>, f64)>,
}

impl Scraped {
    /// Every sample: name, labels, value.
    pub fn samples(&self) -> impl Iterator<Item = &(String, HashMap<String, String>, f64)> {
        self.samples.iter()
    }

    /// The sum of the samples named `name` whose labels include `labels`; 0 when none.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }

    /// Fails unless family `name` is there with type `kind` (`counter`, `gauge`, `histogram`).
    /// (The parser names a counter's family without its `_total`, as OpenMetrics does.)
    pub fn expect_family(&self, name: &str, kind: &str) -> Result<()> {
        let family = match kind {
            "counter" => name.strip_suffix("_total").unwrap_or(name),
            _ => name,
        };
        ensure!(
            self.families.get(family).map(String::as_str) == Some(kind),
            "metric family {name} of type {kind} missing; families: {:?}",
            self.families
        );
        Ok(())
    }
}

/// Parses `{base}/metrics`.
pub async fn scrape(env: &Env, base: &str) -> Result<Scraped> {
    let script = env.paths.root.join("tools/metrics-parse/metrics-parse.sh");
    let mut cmd = tokio::process::Command::new("bash");
    cmd.arg(&script)
        .arg(format!("{base}/metrics"))
        .kill_on_drop(true);
    // The first run installs the parser from PyPI.
    let output = tokio::time::timeout(Duration::from_secs(600), cmd.output())
        .await
        .context("the metrics parser did not finish within 10 minutes")?
        .with_context(|| format!("cannot run {}", script.display()))?;
    ensure!(
        output.status.success(),
        "{base}/metrics did not parse ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).context("the parser's JSON")
}

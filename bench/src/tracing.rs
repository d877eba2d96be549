//! What exporting spans costs: closed-loop creates against two more chat-api replicas on the
//! same database, one as shipped (no `OTEL_EXPORTER_OTLP_ENDPOINT`: no exporter) and one
//! exporting every request's span over OTLP to a real OpenTelemetry Collector (its daprd
//! sampling every call and exporting too). Both have their relay off (chat-api's publishes
//! their events), so the figure is the request path's. They take turns, off, on, off, on,
//! so drift on the shared machine falls on both.

use e2e::Tracing;

use super::*;

/// Concurrent clients per turn.
pub(super) const CLIENTS: usize = 16;
const TURNS: usize = 4;

pub(super) struct TracingBench {
    /// Each turn: (exporting, requests/s, p95 ms, errors).
    pub(super) turns: Vec<(bool, f64, f64, usize)>,
    /// Spans the collector received from the exporting replica.
    pub(super) spans: usize,
    pub(super) duration: Duration,
}

impl TracingBench {
    /// Mean requests/s and p95 of the turns with export off, then on.
    pub(super) fn means(&self) -> ((f64, f64), (f64, f64)) {
        let mean = |on: bool| {
            let turns: Vec<_> = self.turns.iter().filter(|t| t.0 == on).collect();
            let n = turns.len().max(1) as f64;
            (
                turns.iter().map(|t| t.1).sum::<f64>() / n,
                turns.iter().map(|t| t.2).sum::<f64>() / n,
            )
        };
        (mean(false), mean(true))
    }
}

pub(super) async fn run(
    ctx: &Ctx<'_>,
    db_url: &str,
    warmup: Duration,
    duration: Duration,
) -> Result<TracingBench> {
    let tracing = Tracing::start(ctx.env).await?;
    let vars = [
        ("DATABASE_URL", db_url.to_owned()),
        ("RELAY_ENABLED", "false".to_owned()),
    ];
    let mut plain = ctx.env.start_service("chat-api", "chat-api", &vars).await?;
    let mut traced = ctx
        .env
        .start_traced_service("chat-api", "chat-api", &vars, &tracing)
        .await?;
    let result = measure(ctx, &plain, &traced, &tracing, warmup, duration).await;
    for service in [&mut plain, &mut traced] {
        service.process.shutdown().await;
        service.sidecar.shutdown().await;
    }
    result
}

async fn measure(
    ctx: &Ctx<'_>,
    plain: &Service,
    traced: &Service,
    tracing: &Tracing,
    warmup: Duration,
    duration: Duration,
) -> Result<TracingBench> {
    let mut turns = Vec::new();
    for turn in 0..TURNS {
        let exporting = turn % 2 == 1;
        let api = if exporting { traced } else { plain };
        let workers = make_workers(ctx, &format!("trace{turn}-"), CLIENTS, &api.base)?;
        let (_, phase) = run_phase(ctx, workers, Op::Create, CLIENTS, warmup, duration, None).await;
        println!(
            "    export {}: {:.0} req/s, p95 {:.1} ms, {} errors",
            if exporting { "on " } else { "off" },
            phase.rps(),
            phase.latency.p95,
            phase.errors
        );
        turns.push((exporting, phase.rps(), phase.latency.p95, phase.errors));
    }
    // The last batch leaves within 200 ms of the SDK's schedule (5 s by default).
    tokio::time::sleep(Duration::from_secs(6)).await;
    let spans = tracing
        .collector
        .spans()?
        .iter()
        .filter(|s| s.service == "chat-api" && s.name == "request")
        .count();
    Ok(TracingBench {
        turns,
        spans,
        duration,
    })
}

impl TracingBench {
    pub(super) fn render(&self, s: &mut String) {
        use std::fmt::Write as _;
        let ((off_rps, off_p95), (on_rps, on_p95)) = self.means();
        let _ = writeln!(
            s,
            "\n### Span export\n\nTwo more chat-api replicas on the same database, relay off: one as shipped (no OTLP endpoint, so no exporter), one exporting every request's span to a real OpenTelemetry Collector over OTLP/gRPC, its daprd sampling every call. {CLIENTS} closed-loop clients creating tasks for {:.0} s per turn, the two taking turns (off, on, off, on).\n",
            self.duration.as_secs_f64()
        );
        let _ = writeln!(s, "| turn | export | requests/s | p95 ms | errors |");
        let _ = writeln!(s, "|---|---|---|---|---|");
        for (i, (on, rps, p95, errors)) in self.turns.iter().enumerate() {
            let _ = writeln!(
                s,
                "| {} | {} | {rps:.0} | {p95:.1} | {errors} |",
                i + 1,
                if *on { "on" } else { "off" }
            );
        }
        let _ = writeln!(
            s,
            "\nMean: off {off_rps:.0} requests/s, p95 {off_p95:.1} ms; on {on_rps:.0} requests/s ({:.3} × off), p95 {on_p95:.1} ms ({:.3} × off). The collector received {} request spans from the exporting replica.",
            on_rps / off_rps.max(1e-9),
            on_p95 / off_p95.max(1e-9),
            self.spans
        );
    }
}

//! What reached Kafka: the phases' events read back from `task-events`.

use super::*;

pub(super) struct KafkaEvent {
    pub(super) occurred_ms: i64,
    pub(super) append_ms: i64,
}

#[derive(Default)]
pub(super) struct SeenEvents {
    /// (user group: the user id up to its first `-`, such as `b32` or `d`; op) → events and
    /// their distinct ids.
    pub(super) by_group: BTreeMap<(String, Op), (Vec<KafkaEvent>, HashSet<String>)>,
    pub(super) unmatched: usize,
    pub(super) key_mismatches: usize,
    /// The one-user baseline's raw publishes (CloudEvent type [`raw::RAW_TYPE`]): keyed by
    /// the drained user, carrying the sample event of another; not events of the system.
    pub(super) raw: usize,
}

pub(super) struct KafkaPhase {
    pub(super) distinct: usize,
    pub(super) missing: usize,
    /// Events appended to Kafka inside the measured window, per second.
    pub(super) rate: f64,
    pub(super) lag: Quantiles,
}

pub(super) fn user_group(user: &str) -> &str {
    user.split_once('-').map_or(user, |(group, _)| group)
}

impl SeenEvents {
    pub(super) fn phase_stats(&self, phase: &Phase) -> KafkaPhase {
        let (start, end) = (
            phase.wall_start.timestamp_millis(),
            phase.wall_end.timestamp_millis(),
        );
        let group = level_user_prefix(phase.level);
        let Some((events, ids)) = self
            .by_group
            .get(&(user_group(&group).to_owned(), phase.op))
        else {
            return KafkaPhase {
                distinct: 0,
                missing: phase.ok_total,
                rate: 0.0,
                lag: Quantiles::of(Vec::new()),
            };
        };
        let lags: Vec<f64> = events
            .iter()
            .filter(|e| e.occurred_ms >= start && e.occurred_ms < end)
            .map(|e| (e.append_ms - e.occurred_ms) as f64)
            .collect();
        let appended = events
            .iter()
            .filter(|e| e.append_ms >= start && e.append_ms < end)
            .count();
        KafkaPhase {
            distinct: ids.len(),
            missing: phase.ok_total.saturating_sub(ids.len()),
            rate: appended as f64 / phase.window.as_secs_f64().max(1e-9),
            lag: Quantiles::of(lags),
        }
    }

    pub(super) fn drain_stats(&self, drain: Drain) -> Drain {
        let Some((events, ids)) = self
            .by_group
            .get(&(user_group(DRAIN_PREFIX).to_owned(), Op::Create))
        else {
            return drain;
        };
        let first = events.iter().map(|e| e.append_ms).min().unwrap_or(0);
        let last = events.iter().map(|e| e.append_ms).max().unwrap_or(0);
        let span_s = ((last - first).max(1)) as f64 / 1000.0;
        Drain {
            rate: events.len() as f64 / span_s,
            on_kafka: ids.len(),
            ..drain
        }
    }
}

pub(super) async fn read_task_events(ctx: &Ctx<'_>, expected: usize) -> Result<SeenEvents> {
    let mut seen = SeenEvents::default();
    let mut not_append_time = 0usize;
    let read = devstack::consume_timed(
        &ctx.bootstrap,
        ctx.paths,
        TASK_EVENTS,
        expected,
        Duration::from_secs(180),
        |r| {
            if !r.log_append_time {
                not_append_time += 1;
            }
            let v: Value =
                serde_json::from_str(&r.record.value).context("a record that is not JSON")?;
            if v["type"] == raw::RAW_TYPE {
                seen.raw += 1;
                return Ok(());
            }
            let data = &v["data"];
            let user = data["user_id"].as_str().unwrap_or_default();
            if r.record.key.as_deref() != Some(user) {
                seen.key_mismatches += 1;
            }
            let op = match data["event_type"].as_str() {
                Some(t) if t == Op::Create.event_type() => Some(Op::Create),
                Some(t) if t == Op::Complete.event_type() => Some(Op::Complete),
                _ => None,
            };
            let occurred = data["occurred_at"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
            match (op, occurred) {
                (Some(op), Some(occurred)) => {
                    let entry = seen
                        .by_group
                        .entry((user_group(user).to_owned(), op))
                        .or_default();
                    entry.0.push(KafkaEvent {
                        occurred_ms: occurred.timestamp_millis(),
                        append_ms: r.timestamp_ms,
                    });
                    entry
                        .1
                        .insert(data["event_id"].as_str().unwrap_or_default().to_owned());
                }
                // The account deletion's events (relay under faults) are read, not measured.
                _ if data["event_type"] == "task.deleted" => {}
                _ => seen.unmatched += 1,
            }
            Ok(())
        },
    )
    .await?;
    println!("    {read} of {expected} records read");
    if not_append_time > 0 {
        bail!(
            "{not_append_time} records carry CreateTime, not LogAppendTime: the topic configuration did not apply"
        );
    }
    Ok(seen)
}

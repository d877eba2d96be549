//! One round of the relay: read fairly, publish each user's events as a pipeline of its
//! own, keep score of refused events.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::atomic::Ordering,
    time::Instant,
};

use chrono::Utc;
use futures::{StreamExt, future, stream};
use service_kit::{PublishError, Publisher, publish::OutgoingEvent};
use todo_store::StoreError;

use crate::{PendingEvent, PublisherLock};

use super::{
    ROUND_MAX, ROUND_SLICE, Relay, Round,
    plan::{self, Picker},
};

/// A bulk call refused faster than this is retried event by event within the round.
const BULK_FALLBACK_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads after the first, per round, at most (past saturated users, or further pages).
const READS_MAX: usize = 4;

/// A round reads at least this many rows per user it may take (`per_user`) at a time.
const PAGE_MIN_USERS: u64 = 4;

/// A user whose oldest event failed while the sidecar answered: the broker did not take it
/// now, or refused it.
#[derive(Debug, Clone)]
pub(super) struct Refused {
    seq: i64,
    /// Every failed try, for the backoff.
    tries: u32,
    /// Tries the broker refused the event itself ([`PublishError::Refused`]), for parking.
    refusals: u32,
    retry_at: Instant,
}

impl Refused {
    fn new(seq: i64, now: Instant) -> Self {
        Self {
            seq,
            tries: 0,
            refusals: 0,
            retry_at: now,
        }
    }
}

/// A mark of published events in flight during a round: its sequence numbers and the outcome.
type Marking<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = (Vec<i64>, Result<(), StoreError>)> + Send + 'a>,
>;

/// A read, during a round, of what was committed since: the rows and the read's limit.
type Reading<'a> = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<(Vec<PendingEvent>, usize), StoreError>>
            + Send
            + 'a,
    >,
>;

/// Reads during a round start at least this far apart: the commits in between are read,
/// and mostly published, together (fewer, larger calls cost the sidecar and the broker
/// less per event), and a fresh event waits at most this long for its read.
const FRESH_READ_EVERY: std::time::Duration = ROUND_SLICE;

/// What a round needs to read in what is committed while it runs.
struct Fresh {
    /// Rows per read, as the round's first read.
    page: u64,
    /// Events the round may take in all.
    cap: usize,
    per_user: usize,
}

/// How often a round marks what it published so far.
const MARK_EVERY: std::time::Duration = ROUND_SLICE;

/// Single publishes in flight at once, over all bulk calls of a round, when bulk calls are
/// refused as a whole and retried event by event.
pub(super) const FALLBACK_IN_FLIGHT: usize = 16;

/// Users waiting out a refusal are left out of reads, at most this many (the rest are
/// simply tried again): bounds the statement during an outage that refuses everyone.
const WAITING_EXCLUDED_MAX: usize = 1000;

impl<P: Publisher> Relay<P> {
    /// Ends the backoff of every user whose failures were never seen as refusals: after an
    /// outage, in which everybody's events failed alike.
    pub(super) fn forget_outage_failures(&self) {
        self.refused_map().retain(|_, r| r.refusals > 0);
    }

    /// Reads a round's events (marking the previous round's at the same time, on the other
    /// connection), publishes them, and leaves what it published in `unmarked`. Publishes at
    /// most `max_events` events.
    pub(super) async fn round(
        &self,
        lock: &PublisherLock,
        unmarked: &mut Vec<i64>,
        max_events: u64,
    ) -> Round {
        // Read what this round can publish, not more: after a round that published little
        // (one user's backlog, sent one event per round trip while others' commits cut
        // the rounds short), a page of a thousand rows read again each round costs more
        // than the round itself on a busy machine.
        let most = max_events.max(1);
        let least = (PAGE_MIN_USERS * self.config.per_user as u64).min(most);
        let page = (2 * self.pace.load(Ordering::Relaxed) as u64).clamp(least, most);
        let round = self
            .round_of(lock, unmarked, max_events, page, self.config.per_user)
            .await;
        self.pace.store(round.published, Ordering::Relaxed);
        round
    }

    /// The round after one that got nothing through: one bulk call's worth, one event per
    /// user, so that it reaches every user with something pending and not only the oldest
    /// user's backlog (whose partition may be the one that is down).
    pub(super) async fn probe(&self, lock: &PublisherLock, unmarked: &mut Vec<i64>) -> Round {
        let max_events = self.config.bulk_size.max(1) as u64;
        self.round_of(lock, unmarked, max_events, max_events, 1)
            .await
    }

    async fn round_of(
        &self,
        lock: &PublisherLock,
        unmarked: &mut Vec<i64>,
        max_events: u64,
        page: u64,
        per_user: usize,
    ) -> Round {
        let reading = Instant::now();
        let (queues, saturated) = match self.read(unmarked, max_events, page, per_user).await {
            Ok(q) => q,
            Err(e) => {
                tracing::warn!(error = %e, "outbox relay: cannot read the outbox");
                return Round {
                    failed: true,
                    database_failed: true,
                    ..Round::default()
                };
            }
        };
        let read = queues.iter().map(VecDeque::len).sum();
        let users = queues.len();
        if read == 0 {
            return Round::default();
        }
        let read_ms = reading.elapsed().as_secs_f64() * 1e3;
        let publishing = Instant::now();
        // A probe stays what it read; a round takes in what is committed while it runs.
        let fresh = (per_user > 1).then(|| Fresh {
            page,
            cap: usize::try_from(max_events).unwrap_or(usize::MAX),
            per_user,
        });
        let round = self
            .publish_pipelined(lock, queues, read, unmarked, fresh)
            .await;
        let round = Round {
            saturated: saturated || round.saturated,
            ..round
        };
        tracing::debug!(
            read = round.read,
            published = round.published,
            calls = round.calls,
            users,
            read_ms,
            publish_ms = publishing.elapsed().as_secs_f64() * 1e3,
            cut_short = round.cut_short,
            "outbox relay round"
        );
        round
    }

    /// The round's events (at most `max_events`, read `page` rows at a time), one queue per
    /// user in commit order: those of users not parked and not waiting out a refusal, at
    /// most `per_user` of each, reading past users who reached that, then as many more of
    /// what was read as there is room for; and whether more may be pending (someone
    /// reached the cap, or the last read was full). The previous round's events
    /// (`unmarked`) are marked meanwhile.
    async fn read(
        &self,
        unmarked: &mut Vec<i64>,
        max_events: u64,
        page: u64,
        per_user: usize,
    ) -> Result<(Vec<VecDeque<PendingEvent>>, bool), StoreError> {
        let mut except: HashSet<String> = self.waiting_refused().into_iter().collect();
        // The read may still see the previous round's events as pending (their mark runs
        // alongside): they are left out by sequence number, so read that many more.
        let limit = page + unmarked.len() as u64;
        let marking = async {
            if unmarked.is_empty() {
                Ok(())
            } else {
                self.outbox.remove_published(unmarked).await
            }
        };
        let except_list: Vec<String> = except.iter().cloned().collect();
        let (batch, marked) =
            tokio::join!(self.outbox.publishable(0, limit, &except_list), marking);
        let previous: HashSet<i64> = unmarked.iter().copied().collect();
        marked?;
        unmarked.clear();
        let mut batch = batch?;
        let mut picker = Picker::new(per_user);
        let cap = usize::try_from(max_events).unwrap_or(usize::MAX);
        let mut full = false;
        // Where the first page ended, once a second page was read.
        let mut paged_after: Option<i64> = None;
        for _ in 0..=READS_MAX {
            full = batch.len() as u64 >= limit;
            let last = batch.last().map(|e| e.seq);
            picker.take(batch.into_iter().filter(|e| !previous.contains(&e.seq)));
            if !full || picker.len() >= cap {
                break;
            }
            // On past the users who reached the cap (their next rows would only be left
            // out), or the next page of everyone's.
            except.extend(plan::without(picker.newly_saturated(), &except));
            let except_list: Vec<String> = except.iter().cloned().collect();
            let after = last.unwrap_or(0);
            paged_after.get_or_insert(after);
            #[cfg(test)]
            self.between_pages().await;
            batch = self.outbox.publishable(after, page, &except_list).await?;
        }
        let mut saturated = picker.any_saturated() || full;
        // A probe stays one event per user.
        if per_user > 1 {
            picker.top_up(cap);
        }
        let mut queues = picker.into_queues();
        if let Some(first_page_end) = paged_after {
            saturated |= self.cut_at_gaps(&mut queues, first_page_end).await?;
        }
        Ok((queues, saturated))
    }

    /// Each page is a statement of its own: a row committed between two of them below
    /// where the later one starts is in neither, while its user's next event, committed
    /// after it, can be in the later page. So the queues holding events read after the
    /// first page (`first_page_end`) are checked against their users' unpublished events
    /// and cut before any they lack; what was cut goes next (a read during the round, or
    /// the next round's). Returns whether anything was cut.
    async fn cut_at_gaps(
        &self,
        queues: &mut Vec<VecDeque<PendingEvent>>,
        first_page_end: i64,
    ) -> Result<bool, StoreError> {
        let paged: Vec<&VecDeque<PendingEvent>> = queues
            .iter()
            .filter(|q| q.back().is_some_and(|e| e.seq > first_page_end))
            .collect();
        let users: Vec<String> = paged
            .iter()
            .filter_map(|q| q.front().map(|e| e.user_id.clone()))
            .collect();
        let Some(up_to) = paged.iter().filter_map(|q| q.back().map(|e| e.seq)).max() else {
            return Ok(false);
        };
        let pending = self.outbox.pending_seqs(&users, up_to).await?;
        Ok(plan::cut_at_gaps(queues, &pending))
    }

    /// Each user's events as a pipeline of its own: at most one event per user in flight,
    /// the next sent as soon as the one before it was acknowledged, while the other users'
    /// calls go on (no wave waits for its slowest call). Whatever is ready at a moment goes
    /// in one bulk call, many users per call, at most [`RelayConfig::concurrency`] calls
    /// in flight. A user whose event failed is done for this round: nothing of theirs
    /// overtakes it.
    ///
    /// With `fresh`, what is committed while the round runs is read in as it goes (a
    /// commit wakes it; one read at a time, at least [`FRESH_READ_EVERY`] apart) and joins
    /// its user's pipeline, so no user's events wait for a round to end: a heavy user's
    /// backlog keeps going while the others' new events are read beside it.
    /// A round whose calls were all answered waits for a read that is due (a commit woke
    /// it) instead of ending: under steady writes, each call then carries a slice's
    /// commits, not the one or two of the moment.
    ///
    /// [`RelayConfig::concurrency`]: super::RelayConfig::concurrency
    async fn publish_pipelined(
        &self,
        lock: &PublisherLock,
        mut queues: Vec<VecDeque<PendingEvent>>,
        read: usize,
        unmarked: &mut Vec<i64>,
        mut fresh: Option<Fresh>,
    ) -> Round {
        let started = Instant::now();
        let mut round = Round {
            read,
            ..Round::default()
        };
        let mut failures: Vec<(PendingEvent, PublishError)> = Vec::new();
        let mut went: HashSet<String> = HashSet::new();
        // Every event this round took (queued, in flight, published), so a read during the
        // round does not take them again; and each user's queue.
        let mut known: HashSet<i64> = queues.iter().flatten().map(|e| e.seq).collect();
        let mut index: HashMap<String, usize> = queues
            .iter()
            .enumerate()
            .filter_map(|(u, q)| q.front().map(|e| (e.user_id.clone(), u)))
            .collect();
        // Users whose event failed this round: nothing more of theirs goes in it.
        let mut closed: HashSet<String> = HashSet::new();
        // Users whose next event may go now, oldest first.
        let mut ready: VecDeque<usize> = (0..queues.len())
            .filter(|&u| !queues[u].is_empty())
            .collect();
        let mut in_flight = stream::FuturesUnordered::new();
        // Users with an event in flight.
        let mut busy: HashSet<usize> = HashSet::new();
        let mut calls = 0usize;
        let mut stopping = false;
        // What the round published is marked while it goes on, every `MARK_EVERY`, on the
        // relay's second connection; what is left, by the next round's read.
        let mut marking: Option<Marking<'_>> = None;
        // Events in the mark in flight.
        let mut marking_len = 0usize;
        let mut next_mark = tokio::time::Instant::now() + MARK_EVERY;
        let mut reading: Option<Reading<'_>> = None;
        let mut next_read = tokio::time::Instant::now() + FRESH_READ_EVERY;
        let mut woken = false;
        // One timer for the round's end, not a new one per turn of the loop (per event).
        let round_end =
            tokio::time::sleep_until(tokio::time::Instant::from_std(started + ROUND_MAX));
        tokio::pin!(round_end);
        loop {
            if !stopping && calls > 0 && started.elapsed() >= ROUND_MAX {
                round.cut_short = true;
                stopping = true;
            }
            // Read what was committed since, when woken, one read at a time.
            if !stopping
                && woken
                && reading.is_none()
                && tokio::time::Instant::now() >= next_read
                && let Some(f) = fresh.as_ref()
            {
                let room = f.cap.saturating_sub(round.read);
                if room == 0 {
                    // The round is full: the next one reads the rest at once.
                    fresh = None;
                    round.saturated = true;
                } else {
                    woken = false;
                    let mut except: Vec<String> = self.waiting_refused();
                    except.extend(closed.iter().cloned());
                    // Users with events queued or in flight get their next ones from the
                    // next round's read: this one looks for the others' new events only.
                    except.extend(
                        index
                            .iter()
                            .filter(|&(_, &u)| !queues[u].is_empty() || busy.contains(&u))
                            .map(|(user, _)| user.clone()),
                    );
                    // Rows this round published and has not seen marked yet come back too.
                    let limit = (f.page as usize).min(room) + unmarked.len() + marking_len;
                    reading = Some(Box::pin(async move {
                        // From the start, as the round's first read: a user's oldest pending
                        // event may lie below this round's events (its user was waiting out
                        // a backoff at the round's start, or it became visible since with a
                        // lower number), and a read from a later point would send that
                        // user's newer events before it.
                        self.outbox
                            .publishable(0, limit as u64, &except)
                            .await
                            .map(|rows| (rows, limit))
                    }));
                }
            }
            while !stopping && !ready.is_empty() && in_flight.len() < self.config.concurrency.max(1)
            {
                // A relay that was frozen, or whose lock session ended, must not publish
                // after another replica took over.
                if !lock.still_held().await {
                    round.lost_lock = true;
                    stopping = true;
                    break;
                }
                let call = plan::next_call(
                    &mut ready,
                    |u| queues[u].front().map_or(0, |e| e.payload.len()),
                    self.config.bulk_size,
                );
                let heads: Vec<(usize, PendingEvent)> = call
                    .into_iter()
                    .filter_map(|u| queues[u].pop_front().map(|e| (u, e)))
                    .collect();
                calls += 1;
                round.calls = calls;
                busy.extend(heads.iter().map(|(u, _)| *u));
                in_flight.push(self.publish_heads(heads));
            }
            // Nothing in flight, nothing being read: the round is over unless a commit came
            // in, whose read is due at `next_read`.
            let read_due = woken && !stopping && fresh.is_some();
            if in_flight.is_empty() && reading.is_none() && !read_due {
                break;
            }
            tokio::select! {
                Some(outcomes) = in_flight.next() => {
                    for (user, event, result) in outcomes {
                        busy.remove(&user);
                        match result {
                            Ok(()) => {
                                round.published += 1;
                                crate::metrics::PUBLISHED.inc();
                                unmarked.push(event.seq);
                                went.insert(event.user_id);
                                if !queues[user].is_empty() {
                                    ready.push_back(user);
                                }
                            }
                            Err(e) => {
                                crate::metrics::PUBLISH_FAILURES.inc();
                                round.failed = true;
                                // One call that got no answer is enough: the other failures
                                // of the round may be older refusals, and counting them must
                                // not hide a dead sidecar.
                                round.unreachable |= matches!(e, PublishError::Unavailable(_));
                                closed.insert(event.user_id.clone());
                                failures.push((event, e));
                                queues[user].clear();
                            }
                        }
                    }
                }
                result = async {
                    match reading.as_mut() {
                        Some(r) => r.await,
                        None => std::future::pending().await,
                    }
                } => {
                    reading = None;
                    next_read = tokio::time::Instant::now() + FRESH_READ_EVERY;
                    match result {
                        Ok((rows, limit)) => {
                            round.saturated |= rows.len() >= limit;
                            let per_user = fresh.as_ref().map_or(1, |f| f.per_user);
                            for event in rows {
                                if known.contains(&event.seq) || closed.contains(&event.user_id) {
                                    continue;
                                }
                                let u = *index.entry(event.user_id.clone()).or_insert_with(|| {
                                    queues.push(VecDeque::new());
                                    queues.len() - 1
                                });
                                if queues[u].len() >= per_user {
                                    round.saturated = true;
                                    continue;
                                }
                                // A user with nothing queued and nothing in flight is ready.
                                let idle = queues[u].is_empty() && !busy.contains(&u);
                                known.insert(event.seq);
                                queues[u].push_back(event);
                                round.read += 1;
                                if idle {
                                    ready.push_back(u);
                                }
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "outbox relay: cannot read new events during a round");
                            // Read again at the next round.
                            fresh = None;
                        }
                    }
                }
                () = self.wake.notified(), if !stopping && !woken && fresh.is_some() => {
                    woken = true;
                }
                () = tokio::time::sleep_until(next_read), if woken && reading.is_none() && !stopping && fresh.is_some() => {}
                (seqs, marked) = async {
                    match marking.as_mut() {
                        Some(m) => m.await,
                        None => std::future::pending().await,
                    }
                } => {
                    marking = None;
                    marking_len = 0;
                    self.marked(seqs, marked, unmarked);
                    next_mark = tokio::time::Instant::now() + MARK_EVERY;
                }
                () = tokio::time::sleep_until(next_mark), if marking.is_none() && !unmarked.is_empty() => {
                    let seqs = std::mem::take(unmarked);
                    marking_len = seqs.len();
                    marking = Some(Box::pin(async move {
                        let marked = self.outbox.remove_published(&seqs).await;
                        (seqs, marked)
                    }));
                }
                () = &mut round_end, if !stopping && calls > 0 => {}
            }
        }
        // A commit that came in after the round stopped reading: the next round starts at once.
        round.saturated |= woken;
        if let Some(m) = marking {
            let (seqs, marked) = m.await;
            self.marked(seqs, marked, unmarked);
        }
        stream::iter(&failures)
            .for_each_concurrent(self.config.concurrency.max(1), |(event, e)| async move {
                self.note_failure(event, e).await;
            })
            .await;
        round.only_refusals = !failures.is_empty()
            && failures
                .iter()
                .all(|(_, e)| matches!(e, PublishError::Refused(_)));
        self.score_failures(failures, &went).await;
        round
    }

    /// Publishes `heads` (the oldest unpublished event of each of their users) in one
    /// call: different users, so no order is at stake inside it. If the sidecar refuses a
    /// bulk call as a whole at once, each event gets one more try on its own, so an event
    /// the broker refuses holds back only its own user.
    async fn publish_heads(
        &self,
        heads: Vec<(usize, PendingEvent)>,
    ) -> Vec<(usize, PendingEvent, Result<(), PublishError>)> {
        let events: Vec<OutgoingEvent<'_>> = heads.iter().map(|(_, e)| outgoing(e)).collect();
        let sent = tokio::time::Instant::now();
        let mut results = self.publisher.publish_all(&events).await;
        // Only a quick refusal: a call that ran into the sidecar's timeout (broker down)
        // would only time out again, and the round must stay short.
        let rejected_whole = events.len() > 1
            && sent.elapsed() < BULK_FALLBACK_WITHIN
            && results
                .iter()
                .all(|r| matches!(r, Err(PublishError::Failed(_) | PublishError::Refused(_))));
        if rejected_whole {
            // Bounded over the whole round: a broker that refuses every bulk call must not
            // turn each into hundreds of calls at once.
            results = future::join_all(events.iter().map(|e| async {
                let _turn = self.fallback.acquire().await;
                self.publisher.publish(*e).await
            }))
            .await;
        }
        // An event without an answer was not published.
        results.resize_with(events.len(), || {
            Err(PublishError::Failed(
                "the publisher gave no result for this event".into(),
            ))
        });
        drop(events);
        heads
            .into_iter()
            .zip(results)
            .map(|((u, e), r)| (u, e, r))
            .collect()
    }

    /// After an in-round mark: on failure its events wait for the next mark.
    fn marked(&self, seqs: Vec<i64>, marked: Result<(), StoreError>, unmarked: &mut Vec<i64>) {
        if let Err(e) = marked {
            tracing::warn!(error = %e, count = seqs.len(), "outbox relay: cannot mark events published");
            unmarked.extend(seqs);
        }
    }

    async fn note_failure(&self, event: &PendingEvent, e: &PublishError) {
        if event.attempts == 0 || event.attempts % 20 == 0 {
            tracing::warn!(error = %e, event_id = %event.event_id, user_id = %event.user_id, attempts = event.attempts + 1, "publish failed; will retry");
        }
        if let Err(db) = self.outbox.record_failure(event.seq, &e.to_string()).await {
            tracing::debug!(error = %db, "cannot record publish failure");
        }
    }

    #[cfg(test)]
    async fn between_pages(&self) {
        let hook = self
            .between_pages
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(hook) = hook {
            hook.await;
        }
    }

    /// Users waiting out a refusal's backoff now.
    fn waiting_refused(&self) -> Vec<String> {
        let now = Instant::now();
        self.refused_map()
            .iter()
            .filter(|(_, r)| r.retry_at > now)
            .map(|(u, _)| u.clone())
            .take(WAITING_EXCLUDED_MAX)
            .collect()
    }

    fn refused_map(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Refused>> {
        self.refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Backs off the users of `failed` events whose sidecar answered (their later events
    /// wait; everybody else's go on), and parks an event the broker refused as such
    /// ([`PublishError::Refused`]) [`RelayConfig::park_after`](super::RelayConfig) times.
    /// Only the broker's own verdict on the event parks it: a partition that is down, a
    /// broker restart or a leader election fail the same event with
    /// [`PublishError::Failed`], which waits with backoff however long it lasts. A call
    /// that got no answer ([`PublishError::Unavailable`]) says nothing about the event: the
    /// relay backs off as a whole.
    async fn score_failures(
        &self,
        failed: Vec<(PendingEvent, PublishError)>,
        went: &HashSet<String>,
    ) {
        let now = Instant::now();
        let mut to_park = Vec::new();
        {
            let mut refused = self.refused_map();
            // Users whose event went through this time are done with their backoff.
            refused.retain(|user, _| !went.contains(user));
            for (event, error) in failed {
                if matches!(error, PublishError::Unavailable(_)) {
                    continue;
                }
                let entry = refused
                    .entry(event.user_id.clone())
                    .or_insert_with(|| Refused::new(event.seq, now));
                if entry.seq != event.seq {
                    *entry = Refused::new(event.seq, now);
                }
                entry.tries += 1;
                if matches!(error, PublishError::Refused(_)) {
                    entry.refusals += 1;
                }
                entry.retry_at = now
                    + plan::backoff(
                        self.config.refusal_backoff_initial,
                        self.config.refusal_backoff_max,
                        entry.tries,
                    );
                if entry.refusals >= self.config.park_after {
                    to_park.push((event, error, entry.refusals));
                }
            }
            for (event, _, _) in &to_park {
                refused.remove(&event.user_id);
            }
        }
        for (event, error, refusals) in to_park {
            match self
                .outbox
                .park(event.seq, &error.to_string(), Utc::now())
                .await
            {
                Ok(()) => {
                    crate::metrics::PARKED.inc();
                    tracing::error!(
                    event_id = %event.event_id,
                    user_id = %event.user_id,
                    event_type = %event.event_type,
                    refusals,
                    error = %error,
                    "the broker refuses this event every time; parked it (kept in the outbox; this user's later events wait behind it). Fix the cause, then run `chat-api outbox retry`"
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, event_id = %event.event_id, "cannot park a refused event")
                }
            }
        }
    }
}

fn outgoing(event: &PendingEvent) -> OutgoingEvent<'_> {
    OutgoingEvent {
        topic: &event.topic,
        partition_key: &event.user_id,
        event_id: event.event_id,
        event_type: &event.event_type,
        payload: event.payload.as_bytes(),
        traceparent: event.traceparent.as_deref(),
    }
}

//! What a round publishes and how: pure functions, tested without a database or sidecar.

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    time::Duration,
};

use crate::PendingEvent;

/// Collects a round's events from reads in commit order, at most `per_user` of each user,
/// so that one user's backlog (an account deletion of 20,000 tasks) cannot fill a round and
/// hold up everybody else's events. A user who reached the cap is *saturated*: the next
/// read leaves them out, which reaches the users whose events sit behind theirs.
#[derive(Debug)]
pub(crate) struct Picker {
    per_user: usize,
    counts: BTreeMap<String, usize>,
    kept: Vec<PendingEvent>,
    saturated: Vec<String>,
    /// Saturated users not yet handed out by [`Picker::newly_saturated`].
    fresh: usize,
    /// Events read beyond their user's cap, in commit order: what [`Picker::top_up`] may
    /// add once every user had their share.
    over: Vec<PendingEvent>,
}

impl Picker {
    pub(crate) fn new(per_user: usize) -> Self {
        Self {
            per_user: per_user.max(1),
            counts: BTreeMap::new(),
            kept: Vec::new(),
            saturated: Vec::new(),
            fresh: 0,
            over: Vec::new(),
        }
    }

    /// Takes `rows` (commit order, after everything taken before), keeping each user's
    /// events up to the cap.
    pub(crate) fn take(&mut self, rows: impl IntoIterator<Item = PendingEvent>) {
        for event in rows {
            let count = self.counts.entry(event.user_id.clone()).or_default();
            if *count >= self.per_user {
                self.over.push(event);
                continue;
            }
            *count += 1;
            if *count == self.per_user {
                self.saturated.push(event.user_id.clone());
            }
            self.kept.push(event);
        }
    }

    /// Users saturated since the last call: the next read must leave them out.
    pub(crate) fn newly_saturated(&mut self) -> &[String] {
        let from = self.fresh;
        self.fresh = self.saturated.len();
        &self.saturated[from..]
    }

    /// Whether any user reached the cap (so more of theirs may be pending).
    pub(crate) fn any_saturated(&self) -> bool {
        !self.saturated.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.kept.len()
    }

    /// Fills the round up to `cap` events with the events already read beyond their
    /// users' cap, in commit order, once every user reached had their share: one user's
    /// backlog then goes in long rounds when nobody else is waiting, instead of a round,
    /// and a read of the same rows again, per `per_user` events. Each user's events stay
    /// a prefix of their pending events (a user's rows are read in one stretch: once
    /// saturated, they are left out of later reads).
    pub(crate) fn top_up(&mut self, cap: usize) {
        let room = cap.saturating_sub(self.kept.len());
        let over = std::mem::take(&mut self.over);
        self.kept.extend(over.into_iter().take(room));
    }

    /// The kept events as one queue per user, each in commit order; users in order of
    /// their oldest event.
    pub(crate) fn into_queues(self) -> Vec<VecDeque<PendingEvent>> {
        let mut order: Vec<String> = Vec::new();
        let mut by_user: BTreeMap<String, VecDeque<PendingEvent>> = BTreeMap::new();
        for event in self.kept {
            let queue = by_user.entry(event.user_id.clone()).or_default();
            if queue.is_empty() {
                order.push(event.user_id.clone());
            }
            queue.push_back(event);
        }
        order
            .into_iter()
            .filter_map(|u| by_user.remove(&u))
            .collect()
    }
}

/// Payload bytes in one bulk call at most (a single larger event still goes, alone): well
/// inside daprd's 4 MiB gRPC request limit whatever the tasks hold.
pub(crate) const BULK_BYTES_MAX: usize = 1024 * 1024;

/// Takes the next bulk call off the front of `ready` (users in order): at most `bulk_size`
/// users and [`BULK_BYTES_MAX`] payload bytes, `size(user)` being the size of that user's
/// next event; a single larger event still goes, alone.
pub(crate) fn next_call(
    ready: &mut VecDeque<usize>,
    size: impl Fn(usize) -> usize,
    bulk_size: usize,
) -> Vec<usize> {
    let mut call = Vec::new();
    let mut bytes = 0;
    while let Some(&user) = ready.front() {
        let event = size(user);
        if !call.is_empty() && (call.len() >= bulk_size.max(1) || bytes + event > BULK_BYTES_MAX) {
            break;
        }
        ready.pop_front();
        call.push(user);
        bytes += event;
    }
    call
}

/// Capped exponential backoff with full jitter in the upper half: `initial` after the first
/// failure, doubling, at most `max`.
pub(crate) fn backoff(initial: Duration, max: Duration, failures: u32) -> Duration {
    let exp = initial.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    let capped = exp.min(max);
    let half = capped / 2;
    half + half.mul_f64(rand::random::<f64>())
}

/// Cuts each queue before its first gap: an unpublished event of its user (`pending`, with
/// sequence numbers ascending) that is not the queue's next one. A read taken in pages
/// misses a row that becomes visible between two pages below where the next page starts,
/// while that user's later events can be in the next page; they must not go before it.
/// Drops the queues left empty. Returns whether any queue was cut.
pub(crate) fn cut_at_gaps(
    queues: &mut Vec<VecDeque<PendingEvent>>,
    pending: &[(i64, String)],
) -> bool {
    let mut by_user: HashMap<&str, Vec<i64>> = HashMap::new();
    for (seq, user) in pending {
        by_user.entry(user.as_str()).or_default().push(*seq);
    }
    let mut cut = false;
    for queue in queues.iter_mut() {
        let (Some(first), Some(last)) = (queue.front(), queue.back()) else {
            continue;
        };
        let Some(seqs) = by_user.get(first.user_id.as_str()) else {
            continue;
        };
        let up_to = last.seq;
        let unbroken = queue
            .iter()
            .zip(seqs.iter().filter(|&&s| s <= up_to))
            .take_while(|(event, seq)| event.seq == **seq)
            .count();
        if unbroken < queue.len() {
            queue.truncate(unbroken);
            cut = true;
        }
    }
    queues.retain(|q| !q.is_empty());
    cut
}

/// The users among `users` that are not in `except`.
pub(crate) fn without<'a>(
    users: impl IntoIterator<Item = &'a String>,
    except: &HashSet<String>,
) -> Vec<String> {
    users
        .into_iter()
        .filter(|u| !except.contains(*u))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn event(seq: i64, user: &str) -> PendingEvent {
        PendingEvent {
            seq,
            event_id: uuid::Uuid::now_v7(),
            user_id: user.to_owned(),
            topic: "task-events".into(),
            event_type: "task.deleted".into(),
            payload: String::new(),
            created_at: Utc::now(),
            attempts: 0,
            traceparent: None,
        }
    }

    #[test]
    fn a_user_with_a_large_backlog_gets_only_the_cap_and_is_left_out_of_the_next_read() {
        let mut picker = Picker::new(3);
        let rows: Vec<PendingEvent> = (1..=10).map(|s| event(s, "heavy")).collect();
        picker.take(rows);
        assert_eq!(picker.len(), 3);
        assert_eq!(picker.newly_saturated(), ["heavy".to_owned()]);
        assert!(picker.newly_saturated().is_empty(), "handed out once");

        // The next read, without the heavy user, reaches the others.
        picker.take([event(11, "ann"), event(12, "bob"), event(13, "ann")]);
        let queues = picker.into_queues();
        let shape: Vec<(String, Vec<i64>)> = queues
            .iter()
            .map(|q| {
                (
                    q[0].user_id.clone(),
                    q.iter().map(|e| e.seq).collect::<Vec<_>>(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            [
                ("heavy".to_owned(), vec![1, 2, 3]),
                ("ann".to_owned(), vec![11, 13]),
                ("bob".to_owned(), vec![12]),
            ]
        );
    }

    #[test]
    fn a_queue_is_cut_before_an_event_of_its_user_that_the_read_missed() {
        let seqs = |queues: &[VecDeque<PendingEvent>]| -> Vec<(String, Vec<i64>)> {
            queues
                .iter()
                .map(|q| (q[0].user_id.clone(), q.iter().map(|e| e.seq).collect()))
                .collect()
        };
        let mut queues: Vec<VecDeque<PendingEvent>> = vec![
            [event(2, "ann"), event(5, "ann"), event(9, "ann")].into(),
            [event(12, "bob")].into(),
            [event(3, "cy"), event(11, "cy")].into(),
        ];
        // ann's 7 and bob's 1 became visible between two pages; cy's 14 is after the read.
        let pending: Vec<(i64, String)> = [
            (1, "bob"),
            (2, "ann"),
            (3, "cy"),
            (5, "ann"),
            (7, "ann"),
            (9, "ann"),
            (11, "cy"),
            (12, "bob"),
            (14, "cy"),
        ]
        .into_iter()
        .map(|(s, u)| (s, u.to_owned()))
        .collect();
        assert!(cut_at_gaps(&mut queues, &pending));
        assert_eq!(
            seqs(&queues),
            [
                ("ann".to_owned(), vec![2, 5]),
                ("cy".to_owned(), vec![3, 11]),
            ],
            "ann stops before 7, bob has nothing before 1, cy is whole"
        );
        assert!(!cut_at_gaps(&mut queues, &pending), "nothing more to cut");
    }

    #[test]
    fn a_round_is_filled_up_with_the_events_read_beyond_the_cap_in_commit_order() {
        let mut picker = Picker::new(3);
        picker.take((1..=10).map(|s| event(s, "heavy")));
        assert_eq!(picker.newly_saturated(), ["heavy".to_owned()]);
        picker.take([event(11, "ann")]);
        picker.top_up(8);
        let queues = picker.into_queues();
        let seqs: Vec<Vec<i64>> = queues
            .iter()
            .map(|q| q.iter().map(|e| e.seq).collect())
            .collect();
        assert_eq!(seqs, vec![vec![1, 2, 3, 4, 5, 6, 7], vec![11]]);
    }

    #[test]
    fn below_the_cap_every_event_is_kept_in_commit_order() {
        let mut picker = Picker::new(16);
        picker.take([event(1, "a"), event(2, "b"), event(3, "a")]);
        assert!(picker.newly_saturated().is_empty());
        let queues = picker.into_queues();
        assert_eq!(queues.len(), 2);
        assert_eq!(queues[0].iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 3]);
    }

    /// Every call [`next_call`] takes until `users` is used up.
    fn calls(users: &[usize], size: impl Fn(usize) -> usize, bulk_size: usize) -> Vec<Vec<usize>> {
        let mut ready: VecDeque<usize> = users.iter().copied().collect();
        let mut calls = Vec::new();
        while !ready.is_empty() {
            calls.push(next_call(&mut ready, &size, bulk_size));
        }
        calls
    }

    #[test]
    fn bulk_calls_are_bounded_by_count_and_bytes_and_keep_the_order() {
        let users: Vec<usize> = (0..10).collect();
        assert_eq!(
            calls(&users, |_| 10, 4),
            vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]
        );
        let big = BULK_BYTES_MAX / 3;
        assert_eq!(
            calls(&users[..5], |_| big, 100),
            vec![vec![0, 1, 2], vec![3, 4]]
        );
        // An event larger than the byte bound still goes, on its own.
        let sizes = [10, BULK_BYTES_MAX * 2, 10, 10];
        assert_eq!(
            calls(&[0, 1, 2, 3], |u| sizes[u], 100),
            vec![vec![0], vec![1], vec![2, 3]]
        );
        assert!(next_call(&mut VecDeque::new(), |_| 1, 4).is_empty());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let (initial, max) = (Duration::from_millis(100), Duration::from_secs(2));
        let first = backoff(initial, max, 1);
        assert!(first <= initial && first >= initial / 2);
        let late = backoff(initial, max, 30);
        assert!(late <= max && late >= max / 2);
    }
}

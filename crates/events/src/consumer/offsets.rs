//! Which offsets may be committed. A message's offset is committed only once it and every
//! earlier message of its partition have been handled or dead-lettered, so a message finished
//! early (another key, another worker) never lets an unfinished one be skipped.

use std::collections::{BTreeSet, HashMap};

/// A topic and partition.
pub(crate) type Partition = (String, i32);

#[derive(Debug, Default)]
struct PartitionState {
    /// Dispatched, not yet finished.
    pending: BTreeSet<i64>,
    /// The offset after the last dispatched message.
    next: Option<i64>,
    /// The position last committed (or loaded): nothing to commit until it moves.
    committed: Option<i64>,
}

#[derive(Debug, Default)]
pub(crate) struct OffsetTracker {
    partitions: HashMap<Partition, PartitionState>,
}

impl OffsetTracker {
    /// A message was handed to a worker.
    pub(crate) fn dispatched(&mut self, partition: Partition, offset: i64) {
        let state = self.partitions.entry(partition).or_default();
        state.pending.insert(offset);
        state.next = Some(state.next.map_or(offset + 1, |n| n.max(offset + 1)));
    }

    /// A message was handled or dead-lettered. Unknown offsets (of a partition revoked since)
    /// are ignored.
    pub(crate) fn finished(&mut self, partition: &Partition, offset: i64) {
        if let Some(state) = self.partitions.get_mut(partition) {
            state.pending.remove(&offset);
        }
    }

    /// Messages dispatched and not finished, over all partitions.
    pub(crate) fn in_flight(&self) -> usize {
        self.partitions.values().map(|s| s.pending.len()).sum()
    }

    /// The position (next offset to read) that may be committed for each partition whose
    /// position moved since the last call.
    pub(crate) fn take_commits(&mut self) -> Vec<(Partition, i64)> {
        let mut commits = Vec::new();
        for (partition, state) in &mut self.partitions {
            let position = state.pending.first().copied().or(state.next);
            if let Some(position) = position
                && state.committed != Some(position)
            {
                state.committed = Some(position);
                commits.push((partition.clone(), position));
            }
        }
        commits.sort();
        commits
    }

    /// The positions to commit for these partitions (on revoke), forgetting them: work still in
    /// flight for them will be redelivered to their new owner.
    pub(crate) fn release(&mut self, partitions: &[Partition]) -> Vec<(Partition, i64)> {
        partitions
            .iter()
            .filter_map(|p| {
                let state = self.partitions.remove(p)?;
                let position = state.pending.first().copied().or(state.next)?;
                (state.committed != Some(position)).then(|| (p.clone(), position))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: i32) -> Partition {
        ("t".to_owned(), n)
    }

    #[test]
    fn commits_stop_at_the_oldest_unfinished_message() {
        let mut tracker = OffsetTracker::default();
        for offset in 10..15 {
            tracker.dispatched(p(0), offset);
        }
        assert_eq!(tracker.in_flight(), 5);
        // 12 and 13 finish first: nothing may be committed past 10.
        tracker.finished(&p(0), 12);
        tracker.finished(&p(0), 13);
        assert_eq!(tracker.take_commits(), [(p(0), 10)]);
        tracker.finished(&p(0), 10);
        assert_eq!(tracker.take_commits(), [(p(0), 11)]);
        // Unchanged position: nothing new to commit.
        assert_eq!(tracker.take_commits(), []);
        tracker.finished(&p(0), 11);
        tracker.finished(&p(0), 14);
        assert_eq!(
            tracker.take_commits(),
            [(p(0), 15)],
            "all done: commit after the last"
        );
        assert_eq!(tracker.in_flight(), 0);
    }

    #[test]
    fn partitions_are_independent_and_revoked_ones_are_released() {
        let mut tracker = OffsetTracker::default();
        tracker.dispatched(p(0), 0);
        tracker.dispatched(p(1), 100);
        tracker.dispatched(p(1), 101);
        tracker.finished(&p(1), 100);
        assert_eq!(tracker.take_commits(), [(p(0), 0), (p(1), 101)]);
        tracker.finished(&p(0), 0);
        assert_eq!(
            tracker.release(&[p(0), p(1)]),
            [(p(0), 1)],
            "p(1) has not moved since"
        );
        // Late completions of released partitions change nothing.
        tracker.finished(&p(1), 101);
        assert_eq!(tracker.take_commits(), []);
        assert_eq!(tracker.in_flight(), 0);
    }
}

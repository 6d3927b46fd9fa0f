//! When a batch is flushed: at `max_messages`, `linger` after its first message, `max_wait`
//! after its first message, or `idle` after its last one, whichever comes first.
//!
//! Only one batch is written at a time, and the one filling meanwhile is not flushed before the
//! write ends; a batch due by then is written at once. So batches grow with the load by
//! themselves (group commit): on a loaded consumer they fill while the previous one is written,
//! and a short `linger` costs no throughput, while on a quiet one a message waits `linger` plus
//! one write rather than `idle` or `max_wait`. A `linger` at or above `max_wait` turns it off.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPolicy {
    /// Flush at this many messages.
    pub max_messages: usize,
    /// Flush this long after the batch's first message, when no write is in progress (and at
    /// once when the write in progress ends later than that).
    pub linger: Duration,
    /// Flush this long after the batch's first message at the latest.
    pub max_wait: Duration,
    /// Flush when no message came for this long.
    pub idle: Duration,
}

impl Default for BatchPolicy {
    /// 1000 messages, 10 ms linger, 5 s max wait, 500 ms idle.
    fn default() -> Self {
        Self {
            max_messages: 1000,
            linger: Duration::from_millis(10),
            max_wait: Duration::from_secs(5),
            idle: Duration::from_millis(500),
        }
    }
}

/// Why a batch was flushed; the label of the batch metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushReason {
    Size,
    Linger,
    MaxWait,
    Idle,
    Shutdown,
}

impl FlushReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Size => "size",
            Self::Linger => "linger",
            Self::MaxWait => "max_wait",
            Self::Idle => "idle",
            Self::Shutdown => "shutdown",
        }
    }
}

/// The clock of the batch being filled.
#[derive(Debug)]
pub(crate) struct BatchClock {
    policy: BatchPolicy,
    len: usize,
    first_at: Option<Instant>,
    last_at: Option<Instant>,
}

impl BatchClock {
    pub(crate) fn new(policy: BatchPolicy) -> Self {
        Self {
            policy,
            len: 0,
            first_at: None,
            last_at: None,
        }
    }

    /// A message joined the batch; `Some(Size)` when the batch is now full.
    pub(crate) fn push(&mut self, now: Instant) -> Option<FlushReason> {
        self.len += 1;
        self.first_at.get_or_insert(now);
        self.last_at = Some(now);
        (self.len >= self.policy.max_messages).then_some(FlushReason::Size)
    }

    /// When the batch must be flushed if nothing else arrives, and why.
    pub(crate) fn deadline(&self) -> Option<(Instant, FlushReason)> {
        let first_at = self.first_at?;
        [
            (first_at + self.policy.max_wait, FlushReason::MaxWait),
            (self.last_at? + self.policy.idle, FlushReason::Idle),
            (first_at + self.policy.linger, FlushReason::Linger),
        ]
        .into_iter()
        // The earliest; of equal ones the first listed (a linger equal to max_wait is max_wait).
        .reduce(|earliest, next| if next.0 < earliest.0 { next } else { earliest })
    }

    /// Whether the batch has reached `max_messages`.
    pub(crate) fn is_full(&self) -> bool {
        self.len >= self.policy.max_messages
    }

    /// Why the batch must be flushed now, if it must.
    pub(crate) fn due(&self, now: Instant) -> Option<FlushReason> {
        if self.is_full() {
            return Some(FlushReason::Size);
        }
        self.deadline()
            .and_then(|(at, reason)| (at <= now).then_some(reason))
    }

    pub(crate) fn reset(&mut self) {
        *self = Self::new(self.policy);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn policy() -> BatchPolicy {
        BatchPolicy {
            max_messages: 3,
            // Off: the tests of the other triggers.
            linger: 1000 * MS,
            max_wait: 1000 * MS,
            idle: 100 * MS,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_flushes_by_size() {
        let mut clock = BatchClock::new(policy());
        assert_eq!(clock.push(Instant::now()), None);
        assert_eq!(clock.push(Instant::now()), None);
        assert_eq!(clock.push(Instant::now()), Some(FlushReason::Size));
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_batch_flushes_when_idle() {
        let mut clock = BatchClock::new(policy());
        assert!(clock.deadline().is_none(), "an empty batch has no deadline");
        let start = Instant::now();
        clock.push(start);
        tokio::time::advance(60 * MS).await;
        clock.push(Instant::now());
        // Idle counts from the last message.
        assert_eq!(
            clock.deadline(),
            Some((start + 160 * MS, FlushReason::Idle))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_trickle_flushes_at_max_wait() {
        let mut policy = policy();
        policy.max_messages = 1000;
        let mut clock = BatchClock::new(policy);
        let start = Instant::now();
        // A message every 90 ms never lets the batch go idle for 100 ms.
        for _ in 0..12 {
            clock.push(Instant::now());
            tokio::time::advance(90 * MS).await;
        }
        assert_eq!(
            clock.deadline(),
            Some((start + 1000 * MS, FlushReason::MaxWait))
        );
        clock.reset();
        assert!(clock.deadline().is_none(), "a reset batch has no deadline");
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_is_due_when_full_or_past_its_deadline() {
        let mut clock = BatchClock::new(policy());
        assert_eq!(clock.due(Instant::now()), None, "empty");
        clock.push(Instant::now());
        assert_eq!(clock.due(Instant::now()), None, "fresh");
        tokio::time::advance(100 * MS).await;
        assert_eq!(clock.due(Instant::now()), Some(FlushReason::Idle));
        clock.push(Instant::now());
        clock.push(Instant::now());
        assert!(clock.is_full());
        assert_eq!(clock.due(Instant::now()), Some(FlushReason::Size));
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_flushes_after_its_linger_not_at_max_wait() {
        let mut policy = policy();
        policy.max_messages = 1000;
        policy.linger = 20 * MS;
        let mut clock = BatchClock::new(policy);
        let start = Instant::now();
        // Busier than idle: a message every 5 ms.
        for _ in 0..3 {
            clock.push(Instant::now());
            tokio::time::advance(5 * MS).await;
        }
        assert_eq!(
            clock.deadline(),
            Some((start + 20 * MS, FlushReason::Linger))
        );
        assert_eq!(clock.due(Instant::now()), None);
        // A write that ended after the linger: the batch that filled meanwhile goes at once.
        tokio::time::advance(50 * MS).await;
        assert_eq!(clock.due(Instant::now()), Some(FlushReason::Linger));
    }

    #[tokio::test(start_paused = true)]
    async fn a_linger_at_max_wait_is_max_wait() {
        let mut policy = policy();
        policy.max_messages = 1000;
        policy.idle = 5000 * MS;
        let mut clock = BatchClock::new(policy);
        let start = Instant::now();
        clock.push(start);
        assert_eq!(
            clock.deadline(),
            Some((start + 1000 * MS, FlushReason::MaxWait))
        );
    }

    #[test]
    fn the_defaults() {
        let policy = BatchPolicy::default();
        assert_eq!(
            (
                policy.max_messages,
                policy.linger,
                policy.max_wait,
                policy.idle
            ),
            (1000, 10 * MS, Duration::from_secs(5), 500 * MS)
        );
    }
}

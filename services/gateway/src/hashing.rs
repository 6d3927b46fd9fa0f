//! Argon2id password hashing on a bounded pool.
//!
//! Hashing is deliberately slow (tens of milliseconds and ~19 MiB per hash with OWASP's
//! parameters), so it runs on blocking threads, at most `HASH_WORKERS` at a time, never on the
//! HTTP workers. The worker permit is held by the blocking task itself: a request whose client
//! goes away stops waiting, but a hash already started keeps its permit until it ends, so no
//! more than `HASH_WORKERS` hashes (and their memory) ever exist at once. Waiting hashes are
//! bounded too: a request that would take the queue past `HASH_QUEUE_CAPACITY` is refused at
//! once (503 with `Retry-After`) instead of piling up.
//!
//! Bulk registrations hash in a lane of their own: at most `HASH_BULK_SHARE` percent of the
//! queue places and of the workers (at least one), so a caller sending bulk requests as fast as
//! it can fills its share and gets 503s while single registrations, sign-ins and password
//! changes keep the rest. (The worker semaphore is fair: a single hash waits behind at most the
//! bulk lane's workers, not behind the thousand hashes of a bulk request.)
//!
//! The Argon2 memory (`memory_kib` KiB per hash) is allocated once per worker and reused: a
//! fresh 19 MiB buffer per hash, freed on whichever blocking thread ran it, made the C
//! library's per-thread memory pools keep gigabytes the process never gave back.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::Semaphore;
use tracing::Instrument as _;

/// Argon2id cost parameters. The default is OWASP's first recommendation: 19 MiB, 2 passes, 1
/// lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HashParams {
    pub(crate) memory_kib: u32,
    pub(crate) iterations: u32,
    pub(crate) parallelism: u32,
}

impl Default for HashParams {
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum HashError {
    #[error("the password hashing queue is full")]
    Busy,
    #[error("password hashing failed: {0}")]
    Failed(String),
}

/// The pool. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct PasswordHasher {
    argon2: Arc<Argon2<'static>>,
    queue: Arc<Semaphore>,
    workers: Arc<Semaphore>,
    /// The bulk lane's share of the queue and of the workers.
    bulk_queue: Arc<Semaphore>,
    bulk_workers: Arc<Semaphore>,
    /// Argon2 memory of the workers not hashing right now: at most one buffer per worker.
    memory: Arc<Mutex<Vec<Vec<Block>>>>,
    /// Hashes running now (`gateway_password_hashes_running`), and the most seen at once.
    running: Arc<Running>,
}

#[derive(Debug, Default)]
struct Running {
    now: AtomicUsize,
    peak: AtomicUsize,
    /// Hashes started so far.
    begun: AtomicUsize,
}

impl Running {
    /// Counts a hash as running until the guard is dropped (a panic included).
    fn start(self: &Arc<Self>) -> RunningGuard {
        self.begun.fetch_add(1, Ordering::SeqCst);
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        metrics::gauge!("gateway_password_hashes_running").set(now as f64);
        RunningGuard(self.clone())
    }
}

struct RunningGuard(Arc<Running>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        let now = self.0.now.fetch_sub(1, Ordering::SeqCst) - 1;
        metrics::gauge!("gateway_password_hashes_running").set(now as f64);
    }
}

impl PasswordHasher {
    pub(crate) fn new(
        params: HashParams,
        workers: usize,
        queue_capacity: usize,
        bulk_share_percent: u8,
    ) -> Result<Self, String> {
        let share = |total: usize| (total * usize::from(bulk_share_percent.min(100)) / 100).max(1);
        let params = Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            None,
        )
        .map_err(|e| format!("invalid Argon2 parameters: {e}"))?;
        Ok(Self {
            argon2: Arc::new(Argon2::new(Algorithm::Argon2id, Version::V0x13, params)),
            queue: Arc::new(Semaphore::new(queue_capacity.max(1))),
            workers: Arc::new(Semaphore::new(workers.max(1))),
            bulk_queue: Arc::new(Semaphore::new(share(queue_capacity.max(1)))),
            bulk_workers: Arc::new(Semaphore::new(share(workers.max(1)))),
            memory: Arc::new(Mutex::new(Vec::new())),
            running: Arc::default(),
        })
    }

    /// Hashes every password (PHC strings, in order), or refuses them all at once when the
    /// queue has no room for that many.
    pub(crate) async fn hash_all(&self, passwords: Vec<String>) -> Result<Vec<String>, HashError> {
        let count = u32::try_from(passwords.len()).map_err(|_| HashError::Busy)?;
        let _queued = refused_when_full(self.queue.clone().try_acquire_many_owned(count))?;
        let hashes = passwords
            .into_iter()
            .map(|password| self.hash_one(password, None));
        futures::future::try_join_all(hashes).await
    }

    /// [`Self::hash_all`] in the bulk lane: refused when the lane's share of the queue has no
    /// room for that many, and hashed on the lane's share of the workers.
    pub(crate) async fn hash_bulk(&self, passwords: Vec<String>) -> Result<Vec<String>, HashError> {
        let count = u32::try_from(passwords.len()).map_err(|_| HashError::Busy)?;
        let _lane = refused_when_full(self.bulk_queue.clone().try_acquire_many_owned(count))?;
        let _queued = refused_when_full(self.queue.clone().try_acquire_many_owned(count))?;
        let hashes = passwords
            .into_iter()
            .map(|password| self.hash_one(password, Some(&self.bulk_workers)));
        futures::future::try_join_all(hashes).await
    }

    /// Whether `password` matches any of `hashes` (PHC strings; a current password and its
    /// history), checked one by one on the pool, stopping at the first match. Takes one queue
    /// place; refused at once (`Busy`) when the queue is full. A hash that does not parse
    /// matches nothing.
    pub(crate) async fn verify_any(
        &self,
        password: String,
        hashes: Vec<String>,
    ) -> Result<bool, HashError> {
        let _queued = refused_when_full(self.queue.clone().try_acquire_owned())?;
        let password = Arc::new(password);
        for hash in hashes {
            if self.verify_one(password.clone(), hash).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Verifies on a worker, in the worker's reused memory when the hash has the pool's
    /// parameters (else in memory of its own). The comparison is constant-time
    /// (`password_hash::Output`'s equality).
    async fn verify_one(&self, password: Arc<String>, phc: String) -> Result<bool, HashError> {
        let span = tracing::info_span!("password.verify", otel.kind = "internal");
        let Ok(parsed) = PasswordHash::new(&phc) else {
            return Ok(false);
        };
        let (Some(_), Some(_), Ok(params)) = (parsed.salt, parsed.hash, Params::try_from(&parsed))
        else {
            return Ok(false);
        };
        if parsed.algorithm != argon2::ARGON2ID_IDENT || params != *self.argon2.params() {
            // Another algorithm or cost: the library's own verification, in memory of its own
            // (the worker's buffer is sized for the pool's parameters).
            return self
                .on_worker(span, false, move |_, _| {
                    use argon2::PasswordVerifier as _;
                    let parsed =
                        PasswordHash::new(&phc).map_err(|e| HashError::Failed(e.to_string()))?;
                    let other = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
                    Ok(other.verify_password(password.as_bytes(), &parsed).is_ok())
                })
                .await;
        }
        self.on_worker(span, true, move |argon2, blocks| {
            let failed = |e: &dyn std::fmt::Display| HashError::Failed(e.to_string());
            let parsed = PasswordHash::new(&phc).map_err(|e| failed(&e))?;
            let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
                return Ok(false);
            };
            let mut salt_bytes = [0u8; 64];
            let raw_salt = salt.decode_b64(&mut salt_bytes).map_err(|e| failed(&e))?;
            let mut output = vec![0u8; expected.len()];
            argon2
                .hash_password_into_with_memory(password.as_bytes(), raw_salt, &mut output, blocks)
                .map_err(|e| failed(&e))?;
            Ok(Output::new(&output).map_err(|e| failed(&e))? == expected)
        })
        .await
    }

    /// Hashes on a worker; in a lane, once a worker permit of the lane is free too (held until
    /// the hash ends).
    async fn hash_one(
        &self,
        password: String,
        lane: Option<&Arc<Semaphore>>,
    ) -> Result<String, HashError> {
        let started = std::time::Instant::now();
        let span = tracing::info_span!("password.hash", otel.kind = "internal");
        let _lane = match lane {
            Some(lane) => Some(
                lane.clone()
                    .acquire_owned()
                    .await
                    .map_err(|e| HashError::Failed(e.to_string()))?,
            ),
            None => None,
        };
        let hash = self
            .on_worker(span, true, move |argon2, blocks| {
                let salt = SaltString::generate(&mut OsRng);
                hash_with_memory(argon2, password.as_bytes(), &salt, blocks)
            })
            .await?;
        metrics::histogram!("gateway_password_hash_seconds")
            .record(started.elapsed().as_secs_f64());
        Ok(hash)
    }

    /// Runs `work` on a blocking thread once a worker permit is free, with that worker's Argon2
    /// memory when `pooled` (reused from an earlier hash, or made now: the permit means a
    /// buffer is free or may be made); without it, `work` gets no blocks.
    async fn on_worker<T: Send + 'static>(
        &self,
        span: tracing::Span,
        pooled: bool,
        work: impl FnOnce(&Argon2<'static>, &mut [Block]) -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
        let worker = self
            .workers
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| HashError::Failed(e.to_string()))?;
        let (argon2, memory, running) = (
            self.argon2.clone(),
            self.memory.clone(),
            self.running.clone(),
        );
        tokio::task::spawn_blocking(move || {
            // The permit lives as long as this task, not as the request that asked for it.
            let _worker = worker;
            let _running = running.start();
            if !pooled {
                return work(&argon2, &mut []);
            }
            let mut blocks = memory
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pop()
                .unwrap_or_else(|| vec![Block::default(); argon2.params().block_count()]);
            let outcome = work(&argon2, &mut blocks);
            memory
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(blocks);
            outcome
        })
        .instrument(span)
        .await
        .map_err(|e| HashError::Failed(e.to_string()))?
    }
}

/// A queue permit, or `Busy` (counted in `gateway_password_hash_refused_total`).
fn refused_when_full<T>(permit: Result<T, tokio::sync::TryAcquireError>) -> Result<T, HashError> {
    permit.map_err(|_| {
        metrics::counter!("gateway_password_hash_refused_total").increment(1);
        HashError::Busy
    })
}

/// The PHC string of `password` under `salt`, exactly as `argon2`'s `PasswordHasher` writes
/// it, computed in `blocks` (at least `params().block_count()` of them).
fn hash_with_memory(
    argon2: &Argon2<'_>,
    password: &[u8],
    salt: &SaltString,
    blocks: &mut [Block],
) -> Result<String, HashError> {
    let failed = |e: &dyn std::fmt::Display| HashError::Failed(e.to_string());
    let mut salt_bytes = [0u8; 64];
    let raw_salt = salt.decode_b64(&mut salt_bytes).map_err(|e| failed(&e))?;
    let mut output = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2
        .hash_password_into_with_memory(password, raw_salt, &mut output, blocks)
        .map_err(|e| failed(&e))?;
    let hash = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(argon2.params()).map_err(|e| failed(&e))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&output).map_err(|e| failed(&e))?),
    };
    Ok(hash.to_string())
}

#[cfg(test)]
mod tests {
    use argon2::PasswordVerifier as _;
    use argon2::password_hash::PasswordHash;

    use super::*;

    fn cheap() -> HashParams {
        HashParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        }
    }

    #[tokio::test]
    async fn hashes_are_argon2id_phc_strings_that_verify() {
        let hasher = PasswordHasher::new(cheap(), 2, 10, 50).unwrap();
        let hashes = hasher
            .hash_all(vec!["correct horse".into(), "battery staple".into()])
            .await
            .unwrap();
        assert!(
            hashes[0].starts_with("$argon2id$v=19$m=1024,t=1,p=1$"),
            "{}",
            hashes[0]
        );
        let parsed = PasswordHash::new(&hashes[0]).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );
        assert!(
            Argon2::default()
                .verify_password(b"battery staple", &parsed)
                .is_err()
        );
        assert_ne!(hashes[0], hashes[1]);
    }

    #[tokio::test]
    async fn verification_matches_only_the_right_password_in_any_hash() {
        let hasher = PasswordHasher::new(cheap(), 2, 10, 50).unwrap();
        let hashes = hasher
            .hash_all(vec!["correct horse".into(), "battery staple".into()])
            .await
            .unwrap();
        assert!(
            hasher
                .verify_any("battery staple".into(), hashes.clone())
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify_any("correct horse!".into(), hashes.clone())
                .await
                .unwrap()
        );
        // A hash of other parameters (the library default) verifies too; garbage matches nothing.
        use argon2::PasswordHasher as _;
        let salt = SaltString::generate(&mut OsRng);
        let other = Argon2::default()
            .hash_password(b"pw 12345", &salt)
            .unwrap()
            .to_string();
        assert!(
            hasher
                .verify_any("pw 12345".into(), vec!["not a hash".into(), other])
                .await
                .unwrap()
        );
    }

    #[test]
    fn hashes_in_reused_memory_are_the_librarys_own() {
        use argon2::PasswordHasher as _;
        let params = Params::new(1024, 1, 1, None).unwrap();
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut blocks = vec![Block::default(); argon2.params().block_count()];
        for password in ["correct horse", "battery staple", ""] {
            let salt = SaltString::generate(&mut OsRng);
            let ours = hash_with_memory(&argon2, password.as_bytes(), &salt, &mut blocks).unwrap();
            let library = argon2
                .hash_password(password.as_bytes(), &salt)
                .unwrap()
                .to_string();
            assert_eq!(ours, library, "the same buffer, hash after hash");
        }
    }

    #[tokio::test]
    async fn memory_is_one_buffer_per_worker_at_most() {
        let hasher = PasswordHasher::new(cheap(), 2, 100, 50).unwrap();
        for _ in 0..5 {
            hasher.hash_all(vec!["password1".into(); 20]).await.unwrap();
        }
        let buffers = hasher.memory.lock().unwrap().len();
        assert!(
            (1..=2).contains(&buffers),
            "{buffers} buffers for 2 workers"
        );
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once() {
        let hasher = PasswordHasher::new(cheap(), 1, 3, 50).unwrap();
        let too_many = vec!["password1".to_owned(); 4];
        assert!(matches!(
            hasher.hash_all(too_many).await,
            Err(HashError::Busy)
        ));
        // Room is given back once hashes finish.
        assert_eq!(
            hasher
                .hash_all(vec!["password1".into(); 3])
                .await
                .unwrap()
                .len(),
            3
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_cancelled_mid_hash_never_let_more_than_the_workers_run() {
        // Slow enough that the cancelled hashes are still running when the next ones start.
        let slow = HashParams {
            memory_kib: 8 * 1024,
            iterations: 8,
            parallelism: 1,
        };
        let hasher = PasswordHasher::new(slow, 1, 100, 50).unwrap();
        for _ in 0..4 {
            let begun = hasher.running.begun.load(Ordering::SeqCst);
            let request = tokio::spawn({
                let hasher = hasher.clone();
                async move { hasher.hash_all(vec!["password1".into()]).await }
            });
            // This request's own hash is under way (after the one cancelled before it).
            while hasher.running.begun.load(Ordering::SeqCst) == begun {
                tokio::task::yield_now().await;
            }
            // The client goes away while its hash runs.
            request.abort();
            assert!(request.await.unwrap_err().is_cancelled());
        }
        hasher.hash_all(vec!["password1".into(); 3]).await.unwrap();
        assert_eq!(
            hasher.running.peak.load(Ordering::SeqCst),
            1,
            "one worker: never two hashes at once"
        );
        assert_eq!(hasher.running.now.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bulk_requests_keep_to_their_lane_and_single_ones_pass_them() {
        let slow = HashParams {
            memory_kib: 8 * 1024,
            iterations: 8,
            parallelism: 1,
        };
        // Two workers and 20 places: the bulk lane has 10 places and one worker.
        let hasher = PasswordHasher::new(slow, 2, 20, 50).unwrap();
        let bulk = tokio::spawn({
            let hasher = hasher.clone();
            async move { hasher.hash_bulk(vec!["password1".into(); 10]).await }
        });
        while hasher.running.begun.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // The lane is full: another bulk request is refused at once, though the queue has room.
        assert!(matches!(
            hasher.hash_bulk(vec!["password1".into()]).await,
            Err(HashError::Busy)
        ));
        // A single registration takes the worker the lane leaves free: it is not queued behind
        // the bulk request's ten hashes.
        hasher.hash_all(vec!["password1".into()]).await.unwrap();
        assert!(
            !bulk.is_finished(),
            "the single hash ran beside the bulk, not after it"
        );
        assert_eq!(bulk.await.unwrap().unwrap().len(), 10);
    }

    #[test]
    fn the_default_parameters_are_owasps() {
        assert_eq!(
            HashParams::default(),
            HashParams {
                memory_kib: 19456,
                iterations: 2,
                parallelism: 1
            }
        );
    }
}

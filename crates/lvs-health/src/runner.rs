//! The checker thread: a tokio current-thread runtime with one task per
//! check, and the table the daemon's thread reads and writes through
//! [`Health`].
//!
//! All shared state is one mutex-protected [`Table`], held only for short
//! updates. The wanted set is diffed synchronously in `set_checks` (so
//! `status()` and `poll_transition()` reflect it at once) and the runtime is
//! told which tasks to start and stop. Every running check carries a
//! generation number: a task that was stopped (or replaced by a new check of
//! the same spec) finds its generation gone and writes nothing more.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::MissedTickBehavior;

use crate::wake::WakeFd;
use crate::{first_offset, CheckSpec, Prober, Status, Transition, Verdict};

/// Shortest interval a check runs at.
const MIN_INTERVAL: Duration = Duration::from_millis(1);
/// How long `Drop` waits for the checker thread to finish.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Runs health checks on their own thread and reports their verdicts.
///
/// Dropping it stops every check and the thread (waiting at most two seconds
/// for the thread; it is detached if it has not finished by then).
pub struct Health {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// Signalled by the thread as it ends (a `Mutex` only to make `Health` `Sync`).
    done: Mutex<mpsc::Receiver<()>>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("wake_fd", &self.shared.wake.raw())
            .finish_non_exhaustive()
    }
}

struct Shared {
    table: Mutex<Table>,
    /// Wakes the runtime's supervisor: commands are waiting, or stop.
    notify: Notify,
    stop: AtomicBool,
    wake: WakeFd,
}

#[derive(Default)]
struct Table {
    checks: HashMap<CheckSpec, Entry>,
    next_generation: u64,
    transitions: VecDeque<Transition>,
    commands: Vec<Command>,
}

struct Entry {
    generation: u64,
    status: Status,
}

enum Command {
    Start(CheckSpec, u64),
    Stop(CheckSpec),
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Health {
    /// Starts the checker thread (one OS thread, named `lvs-health`, running
    /// a tokio current-thread runtime) with no checks.
    pub fn start() -> io::Result<Health> {
        let shared = Arc::new(Shared {
            table: Mutex::new(Table::default()),
            notify: Notify::new(),
            stop: AtomicBool::new(false),
            wake: WakeFd::new()?,
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let (done_tx, done) = mpsc::channel();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("lvs-health".to_string())
            .spawn(move || {
                normal_scheduling();
                runtime.block_on(supervise(thread_shared));
                // Cancels every check task; none blocks, so this is quick.
                runtime.shutdown_timeout(Duration::from_millis(500));
                let _ = done_tx.send(());
            })?;
        Ok(Health {
            shared,
            thread: Some(thread),
            done: Mutex::new(done),
        })
    }

    /// Sets the wanted checks: specs not running yet start (up, first probe
    /// after their offset), running specs missing from `specs` stop, specs in
    /// both keep running with their counters. Identical specs are one check.
    ///
    /// Cheap and non-blocking: the runtime applies the change on its thread.
    /// On return, [`status`](Health::status) lists exactly the new set, and no
    /// transition of a removed check is left to [`poll_transition`](Health::poll_transition).
    pub fn set_checks(&self, specs: Vec<CheckSpec>) {
        let wanted: HashSet<CheckSpec> = specs.into_iter().collect();
        let mut guard = self.shared.table();
        let table = &mut *guard;
        let removed: Vec<CheckSpec> = table
            .checks
            .keys()
            .filter(|s| !wanted.contains(*s))
            .cloned()
            .collect();
        if removed.is_empty() && wanted.len() == table.checks.len() {
            return;
        }
        for spec in removed {
            table.checks.remove(&spec);
            table.commands.push(Command::Stop(spec));
        }
        table.transitions.retain(|t| wanted.contains(&t.spec));
        for spec in wanted {
            if table.checks.contains_key(&spec) {
                continue;
            }
            let generation = table.next_generation;
            table.next_generation += 1;
            table.checks.insert(
                spec.clone(),
                Entry {
                    generation,
                    status: Status::initial(),
                },
            );
            table.commands.push(Command::Start(spec, generation));
        }
        drop(guard);
        self.shared.notify.notify_one();
    }

    /// The next up/down change, oldest first; `None` when there is none.
    ///
    /// Returning `None` also clears [`wake_fd`](Health::wake_fd), so a loop
    /// that drains this leaves the descriptor unreadable until the next change.
    pub fn poll_transition(&self) -> Option<Transition> {
        let mut table = self.shared.table();
        let t = table.transitions.pop_front();
        if t.is_none() {
            // Under the lock: a transition pushed after this raises it again.
            self.shared.wake.clear();
        }
        t
    }

    /// An eventfd that is readable while transitions are waiting. Level
    /// semantics: it stays readable until [`poll_transition`](Health::poll_transition)
    /// returns `None` (or [`clear_wake`](Health::clear_wake) is called). It is
    /// non-blocking and owned by this `Health`: do not close it.
    pub fn wake_fd(&self) -> RawFd {
        self.shared.wake.raw()
    }

    /// Makes [`wake_fd`](Health::wake_fd) unreadable (reads its counter),
    /// whether or not transitions are waiting.
    pub fn clear_wake(&self) {
        self.shared.wake.clear();
    }

    /// Current status of every running check, in no particular order.
    pub fn status(&self) -> Vec<(CheckSpec, Status)> {
        self.shared
            .table()
            .checks
            .iter()
            .map(|(spec, e)| (spec.clone(), e.status.clone()))
            .collect()
    }
}

impl Drop for Health {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.notify.notify_one();
        let done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        if done.recv_timeout(STOP_GRACE).is_ok() {
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
        // Otherwise the thread is left to finish on its own.
    }
}

/// Puts the calling thread under the normal time-sharing policy. A thread
/// inherits its creator's policy: if `Health` is started from a packet worker
/// running SCHED_FIFO, the checks must still not compete with it at real-time
/// priority. Failure leaves the inherited policy (nothing better to do).
fn normal_scheduling() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param for the call; pid 0 is the
    // calling thread.
    let _ = unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &param) };
}

/// The runtime's main task: applies start/stop commands until told to stop.
async fn supervise(shared: Arc<Shared>) {
    let prober = Arc::new(Prober::new());
    let mut tasks: HashMap<CheckSpec, AbortHandle> = HashMap::new();
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let commands = std::mem::take(&mut shared.table().commands);
        for command in commands {
            match command {
                Command::Stop(spec) => {
                    if let Some(task) = tasks.remove(&spec) {
                        task.abort();
                    }
                }
                Command::Start(spec, generation) => {
                    let task = tokio::spawn(run_check(
                        shared.clone(),
                        prober.clone(),
                        spec.clone(),
                        generation,
                    ));
                    if let Some(old) = tasks.insert(spec, task.abort_handle()) {
                        old.abort();
                    }
                }
            }
        }
        // A notification sent since the last wait is kept as a permit.
        shared.notify.notified().await;
    }
    for task in tasks.values() {
        task.abort();
    }
}

/// One check: probe every interval (first after the spec's offset), feed the
/// verdict, publish status and transitions.
async fn run_check(shared: Arc<Shared>, prober: Arc<Prober>, spec: CheckSpec, generation: u64) {
    let interval = spec.interval.max(MIN_INTERVAL);
    let first = tokio::time::Instant::now() + first_offset(&spec);
    let mut ticks = tokio::time::interval_at(first, interval);
    // A late probe (timeout longer than the interval) pushes the schedule
    // back instead of firing a burst to catch up.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut verdict = Verdict::new(spec.rise, spec.fall);
    loop {
        ticks.tick().await;
        let started = Instant::now();
        let result = prober.probe(&spec).await;
        let finished = Instant::now();

        let ok = result.is_ok();
        let reason = result.err().unwrap_or_else(|| "ok".to_string());
        let changed = verdict.record(ok);

        let mut guard = shared.table();
        let table = &mut *guard;
        let Some(entry) = table.checks.get_mut(&spec) else {
            return;
        };
        if entry.generation != generation {
            return;
        }
        let s = &mut entry.status;
        s.up = verdict.is_up();
        s.last_ok = Some(ok);
        s.last_at = Some(finished);
        s.successes = verdict.successes();
        s.failures = verdict.failures();
        s.last_latency = Some(finished - started);
        s.latency.record(finished - started);
        s.checks_run += 1;
        if let Some(up) = changed {
            table.transitions.push_back(Transition {
                spec: spec.clone(),
                up,
                reason: reason.clone(),
                successes: verdict.successes(),
                failures: verdict.failures(),
            });
            shared.wake.raise();
        }
        s.last_reason = reason;
    }
}

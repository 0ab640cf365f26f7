//! The sensor sockets' runtime: a small tokio runtime of its own whose
//! threads run at the lowest CPU priority (nice 19), so that a flood of
//! sensor frames (reading, decoding, dispatching, acking) only gets the
//! cores that bookings, app sockets, health checks and scrapes leave over.
//! The operating system's scheduler does the prioritising; sensors are
//! slowed through their ack window, never queued without bound.
//!
//! This module must never run interactive work (bookings, app ops, HTTP)
//! and never be the only place a sensor socket can run: without the
//! runtime (`PARKME_SENSOR_THREADS=0`, or before [`start`]) [`run`] runs
//! the task where it is.

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::{Builder, Handle, Runtime};

/// Nice value of the sensor threads: the lowest priority.
const NICE: i32 = 19;

static BULK: OnceLock<Handle> = OnceLock::new();

/// Starts the sensor runtime with `threads` worker threads (none for 0).
/// The caller keeps the runtime alive while serving and shuts it down on
/// the one shutdown path, after the server stopped.
pub fn start(threads: u16) -> std::io::Result<Option<Runtime>> {
    if threads == 0 {
        return Ok(None);
    }
    let runtime = Builder::new_multi_thread()
        .worker_threads(usize::from(threads))
        .thread_name("parkme-sensors")
        .on_thread_start(lower_priority)
        .enable_all()
        .build()?;
    // A second start (tests building several applications in one process)
    // keeps the first runtime's handle.
    if BULK.set(runtime.handle().clone()).is_err() {
        return Ok(None);
    }
    Ok(Some(runtime))
}

/// Runs `task` on the sensor runtime when there is one, else in place.
pub async fn run<F>(task: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    match BULK.get() {
        Some(bulk) => {
            if let Err(e) = bulk.spawn(task).await {
                tracing::error!(error = %e, "a sensor socket's task failed");
            }
        }
        None => task.await,
    }
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), NICE) {
        tracing::warn!(error = %e, "could not lower the sensor thread's priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sensor threads run at nice 19 (Linux: per thread).
    #[cfg(target_os = "linux")]
    #[test]
    fn sensor_threads_run_at_the_lowest_priority() {
        let runtime = Builder::new_multi_thread()
            .worker_threads(1)
            .on_thread_start(lower_priority)
            .enable_all()
            .build()
            .expect("a runtime");
        let nice = runtime
            .block_on(async {
                tokio::spawn(async {
                    rustix::process::getpriority_process(Some(rustix::thread::gettid()))
                })
                .await
            })
            .expect("the task ran")
            .expect("getpriority");
        assert_eq!(nice, NICE);
    }
}

//! Progress of a backup or restore, told to an observer: [`Silent`] for the
//! server's streaming route and tests, [`Bar`] for the command line (an
//! `indicatif` bar on stderr when stderr is a terminal; otherwise, as in a
//! CronJob's log, a plain line per stage and one every few seconds).
//!
//! This module must never write to stdout: stdout is for the summary.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::format::Entry;

/// Told what passes; every method has a do-nothing default.
pub trait Progress: Send + Sync {
    /// An entry went through a writer, `bytes` long with its frame head.
    fn entry(&self, _entry: &Entry, _bytes: u64) {}
    /// A restore stage begins, with `total` items when known.
    fn stage(&self, _name: &str, _total: Option<u64>) {}
    /// `n` more items of the current stage are done.
    fn step(&self, _n: u64) {}
    /// Everything is done: clear the display.
    fn done(&self) {}
}

/// Shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {}

/// How often a plain progress line is written when stderr is no terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// A bar on stderr.
#[derive(Debug)]
pub struct Bar {
    bar: ProgressBar,
    /// The kind of entry the bar counts now.
    counting: Mutex<&'static str>,
    /// When stderr is no terminal (the bar is hidden): when the last plain
    /// line was written.
    plain: Option<Mutex<Instant>>,
}

fn counted_style() -> ProgressStyle {
    ProgressStyle::with_template("{msg:>18} [{bar:30}] {pos}/{len} {elapsed_precise}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

fn open_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {msg:>16} {pos} {elapsed_precise}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

impl Default for Bar {
    fn default() -> Self {
        Self::new()
    }
}

impl Bar {
    pub fn new() -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(open_style());
        let plain = if std::io::stderr().is_terminal() {
            bar.enable_steady_tick(Duration::from_millis(200));
            None
        } else {
            Some(Mutex::new(Instant::now()))
        };
        Self {
            bar,
            counting: Mutex::new(""),
            plain,
        }
    }

    /// Without a terminal: one line on stderr, at most every
    /// [`PLAIN_EVERY`] unless `now`.
    fn plain_line(&self, now: bool) {
        let Some(last) = &self.plain else { return };
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        if !now && last.elapsed() < PLAIN_EVERY {
            return;
        }
        *last = Instant::now();
        let message = self.bar.message();
        if message.is_empty() {
            return;
        }
        let elapsed = self.bar.elapsed().as_secs();
        match self.bar.length() {
            Some(total) => eprintln!("{message}: {}/{total} ({elapsed} s)", self.bar.position()),
            None => eprintln!("{message}: {} ({elapsed} s)", self.bar.position()),
        }
    }

    fn restart(&self, name: &str, total: Option<u64>) {
        // The stage that ends, with its last count.
        self.plain_line(true);
        self.bar.set_position(0);
        match total {
            Some(total) => {
                self.bar.set_style(counted_style());
                self.bar.set_length(total);
            }
            None => {
                self.bar.set_style(open_style());
                self.bar.unset_length();
            }
        }
        self.bar.set_message(name.to_owned());
    }
}

impl Progress for Bar {
    fn entry(&self, entry: &Entry, _bytes: u64) {
        let mut counting = self.counting.lock().unwrap_or_else(|e| e.into_inner());
        let kind = match entry {
            Entry::Begin(begin) => {
                self.restart("zones", Some(begin.planned_zones));
                *counting = "zone";
                return;
            }
            Entry::Zone(_) => "zone",
            Entry::Booking(_) => "booking",
            Entry::Key(_) => "idempotency key",
            _ => return,
        };
        if *counting != kind {
            self.restart(&format!("{kind}s"), None);
            *counting = kind;
        }
        self.bar.inc(1);
        self.plain_line(false);
    }

    fn stage(&self, name: &str, total: Option<u64>) {
        self.restart(name, total);
    }

    fn step(&self, n: u64) {
        self.bar.inc(n);
        self.plain_line(false);
    }

    fn done(&self) {
        self.plain_line(true);
        self.bar.finish_and_clear();
    }
}

//! Collects a child process's output line by line on a thread of its own, so a test can
//! wait for what it needs while the child keeps writing (a full pipe would stall it).

use std::io::{BufRead, BufReader, Read};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// The parsed lines of one stream, filled by a reader thread.
pub(crate) struct Lines<T> {
    shared: Arc<Shared<T>>,
    reader: Option<JoinHandle<()>>,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    changed: Condvar,
}

struct State<T> {
    items: Vec<T>,
    /// Lines that did not parse, and read errors: each one fails the test.
    errors: Vec<String>,
    /// The stream reached its end (the child exited or closed it).
    closed: bool,
}

impl<T: Send + 'static> Lines<T> {
    /// Starts reading `source`, turning each line into an item with `parse`.
    pub(crate) fn spawn(
        source: impl Read + Send + 'static,
        mut parse: impl FnMut(&str) -> Result<T> + Send + 'static,
    ) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                items: Vec::new(),
                errors: Vec::new(),
                closed: false,
            }),
            changed: Condvar::new(),
        });
        let writer = Arc::clone(&shared);
        let reader = thread::spawn(move || {
            for line in BufReader::new(source).lines() {
                let parsed = line.map_err(anyhow::Error::from).and_then(|line| {
                    parse(&line).map_err(|e| e.context(format!("unexpected line: {line}")))
                });
                writer.update(|state| match parsed {
                    Ok(item) => state.items.push(item),
                    Err(e) => state.errors.push(format!("{e:#}")),
                });
            }
            writer.update(|state| state.closed = true);
        });
        Self {
            shared,
            reader: Some(reader),
        }
    }

    /// Waits until `ready` holds for the items so far. Fails on a bad line, on the end
    /// of the stream, or after `timeout`, naming `what` it was waiting for.
    pub(crate) fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut ready: impl FnMut(&[T]) -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if let Some(error) = state.errors.first() {
                bail!("while waiting for {what}: {error}");
            }
            if ready(&state.items) {
                return Ok(());
            }
            if state.closed {
                bail!("the output ended before {what}");
            }
            let now = Instant::now();
            if now >= deadline {
                bail!("no {what} within {timeout:?}");
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Runs `f` on the items collected so far.
    pub(crate) fn with_items<R>(&self, f: impl FnOnce(&[T]) -> R) -> R {
        f(&self.shared.lock().items)
    }

    /// Waits for the stream to end, then fails if any line was bad.
    pub(crate) fn finish(&mut self) -> Result<()> {
        if let Some(reader) = self.reader.take()
            && reader.join().is_err()
        {
            bail!("the output reader thread panicked");
        }
        match self.shared.lock().errors.first() {
            Some(error) => bail!("{error}"),
            None => Ok(()),
        }
    }
}

impl<T> Shared<T> {
    /// A poisoned lock only means a test thread panicked; the data is still whole.
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut State<T>)) {
        f(&mut self.lock());
        self.changed.notify_all();
    }
}

//! The counters of `listen` and `connect` ([`Stats`]), their live status line on a
//! terminal (tunnels and bytes each way, with rates), and a log writer that keeps log
//! lines from tearing it. Off a terminal there is no status line, only log lines.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

/// How often the status line is redrawn.
const REFRESH: Duration = Duration::from_millis(500);

/// Counters shared by all tunnels of one command, for the status line and logs.
#[derive(Debug)]
pub struct Stats {
    /// Live control channels (`hyco listen`); tests and the status line watch it.
    pub channels: tokio::sync::watch::Sender<usize>,
    pub active: AtomicU64,
    pub total: AtomicU64,
    pub failed: AtomicU64,
    /// Bytes from the local side into the tunnel.
    pub bytes_out: AtomicU64,
    /// Bytes from the tunnel to the local side.
    pub bytes_in: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            channels: tokio::sync::watch::channel(0).0,
            active: AtomicU64::new(0),
            total: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
        }
    }
}

/// Marks a tunnel active in [`Stats`] for as long as it lives.
pub(crate) struct ActiveGuard(Arc<Stats>);

impl ActiveGuard {
    pub(crate) fn new(stats: Arc<Stats>) -> Self {
        stats.active.fetch_add(1, Ordering::Relaxed);
        stats.total.fetch_add(1, Ordering::Relaxed);
        Self(stats)
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A one-line spinner on stderr.
#[derive(Clone)]
pub struct StatusLine(ProgressBar);

impl Default for StatusLine {
    fn default() -> Self {
        Self::new()
    }
}

impl StatusLine {
    pub fn new() -> Self {
        let bar = ProgressBar::new_spinner();
        bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("static template"));
        Self(bar)
    }

    /// Redraws from `stats` until `shutdown`.
    pub async fn run(self, stats: Arc<Stats>, shutdown: CancellationToken) {
        let mut last = (Instant::now(), 0, 0);
        let mut tick = tokio::time::interval(REFRESH);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.cancelled() => return,
            }
            let (out, inn) = (stats.bytes_out.load(Ordering::Relaxed), stats.bytes_in.load(Ordering::Relaxed));
            let secs = last.0.elapsed().as_secs_f64().max(0.001);
            let rate_out = (out - last.1) as f64 / secs;
            let rate_in = (inn - last.2) as f64 / secs;
            last = (Instant::now(), out, inn);
            let channels = *stats.channels.borrow();
            let channels = if channels > 0 { format!("{channels} control, ") } else { String::new() };
            self.0.set_message(format!(
                "{channels}{} active / {} total tunnels, {} failed | out {} ({}/s) | in {} ({}/s)",
                stats.active.load(Ordering::Relaxed),
                stats.total.load(Ordering::Relaxed),
                stats.failed.load(Ordering::Relaxed),
                human(out as f64),
                human(rate_out),
                human(inn as f64),
                human(rate_in),
            ));
            self.0.tick();
        }
    }

    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

/// Bytes with a binary unit: `1.5 MiB`.
fn human(bytes: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes;
    let mut i = 0;
    while v >= 1024.0 && i < units.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 { format!("{v:.0} {}", units[i]) } else { format!("{v:.1} {}", units[i]) }
}

/// Writes log lines to stderr, around the status line when there is one.
#[derive(Clone)]
pub struct LogWriter(Option<StatusLine>);

impl LogWriter {
    pub fn new(status: Option<StatusLine>) -> Self {
        Self(status)
    }
}

/// One log line's buffer; written out at once on drop.
pub struct LineWriter(Option<StatusLine>, Vec<u8>);

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.1.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let line = std::mem::take(&mut self.1);
        let write = || {
            let _ = std::io::stderr().lock().write_all(&line);
        };
        match &self.0 {
            Some(status) => status.0.suspend(write),
            None => write(),
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter(self.0.clone(), Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(human(0.0), "0 B");
        assert_eq!(human(1536.0), "1.5 KiB");
        assert_eq!(human(3.0 * 1024.0 * 1024.0 * 1024.0), "3.0 GiB");
    }
}

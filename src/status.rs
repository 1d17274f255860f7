//! The counters of `listen` and `connect` ([`Stats`], and a [`Tally`] per tunnel for its
//! line in the log), their live status line on a terminal (what the command is doing,
//! tunnels and bytes each way, with rates), and a log writer that keeps log lines from
//! tearing it. Off a terminal, and with `connect --stdio`, there is no status line, only
//! log lines.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often the status line is redrawn.
const REFRESH: Duration = Duration::from_millis(500);

/// Counters shared by all tunnels of one command, for the status line and logs.
#[derive(Debug)]
pub struct Stats {
    /// Live control channels (`hyco listen`); tests and the status line watch it.
    pub channels: tokio::sync::watch::Sender<usize>,
    /// Where visitors reach a listener's public ports (`host:port`, docs/protocol.md
    /// 10.2), as the relay last granted them; `hyco demo` and the status line watch it.
    pub public: tokio::sync::watch::Sender<Vec<String>>,
    pub active: AtomicU64,
    pub total: AtomicU64,
    pub failed: AtomicU64,
    /// Bytes from the local side into the tunnel.
    pub bytes_out: AtomicU64,
    /// Bytes from the tunnel to the local side.
    pub bytes_in: AtomicU64,
    /// Whether this is a listener's (the status line then shows its control channels).
    listener: AtomicBool,
    /// Whether the status line may draw: not before the command has printed what it
    /// prints first (the line would sit above it).
    shown: AtomicBool,
    /// What the command is doing besides moving bytes (waiting for a listener,
    /// stopping), first on the status line.
    note: Mutex<Option<String>>,
    /// When the command started, for the summary at exit.
    started: Instant,
    /// The forwards of a command that runs several (`hyco up`, `connect -L` given more than
    /// once), each with its own counters, by name; the status line and the summary add
    /// them up.
    forwards: Mutex<Vec<(String, Arc<Stats>)>>,
}

/// What the status line and the summary count: a command's own counters, plus its
/// forwards' ([`Stats::forward`]).
#[derive(Debug, Default, PartialEq, Eq)]
struct Totals {
    active: u64,
    total: u64,
    failed: u64,
    out: u64,
    inn: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            channels: tokio::sync::watch::channel(0).0,
            public: tokio::sync::watch::channel(Vec::new()).0,
            active: AtomicU64::new(0),
            total: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            listener: AtomicBool::new(false),
            shown: AtomicBool::new(false),
            note: Mutex::new(None),
            started: Instant::now(),
            forwards: Mutex::new(Vec::new()),
        }
    }
}

impl Stats {
    /// Marks these as a listener's: the status line says how many control channels are up.
    pub(crate) fn set_listener(&self) {
        self.listener.store(true, Ordering::Relaxed);
    }

    /// Lets the status line draw from now on.
    pub fn show(&self) {
        self.shown.store(true, Ordering::Relaxed);
    }

    /// Puts `note` first on the status line (`None`: nothing).
    pub(crate) fn set_note(&self, note: Option<String>) {
        *self.note.lock().expect("note lock") = note;
    }

    /// New counters for one forward called `name`, counted in these (the status line
    /// adds them up, and shows what each forward's note says).
    pub(crate) fn forward(&self, name: &str) -> Arc<Stats> {
        let stats = Arc::new(Stats::default());
        self.forwards.lock().expect("forwards lock").push((name.to_owned(), stats.clone()));
        stats
    }

    /// Stops showing the forward called `name` (it has stopped); what it counted stays in
    /// these counters' totals.
    pub(crate) fn retire_forward(&self, name: &str) {
        let mut forwards = self.forwards.lock().expect("forwards lock");
        let Some(i) = forwards.iter().position(|(n, _)| n == name) else { return };
        let (_, gone) = forwards.remove(i);
        let t = gone.totals();
        self.total.fetch_add(t.total, Ordering::Relaxed);
        self.failed.fetch_add(t.failed, Ordering::Relaxed);
        self.bytes_out.fetch_add(t.out, Ordering::Relaxed);
        self.bytes_in.fetch_add(t.inn, Ordering::Relaxed);
    }

    /// These counters and their forwards', added up.
    fn totals(&self) -> Totals {
        let mut t = Totals {
            active: self.active.load(Ordering::Relaxed),
            total: self.total.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            out: self.bytes_out.load(Ordering::Relaxed),
            inn: self.bytes_in.load(Ordering::Relaxed),
        };
        for (_, f) in self.forwards.lock().expect("forwards lock").iter() {
            let f = f.totals();
            t.active += f.active;
            t.total += f.total;
            t.failed += f.failed;
            t.out += f.out;
            t.inn += f.inn;
        }
        t
    }

    /// The line logged at exit: tunnels, failures, bytes each way and how long it ran.
    pub(crate) fn summary(&self) -> String {
        let t = self.totals();
        format!(
            "{} tunnels ({} failed), out {}, in {}, over {}",
            t.total,
            t.failed,
            human(t.out as f64),
            human(t.inn as f64),
            duration(self.started.elapsed()),
        )
    }
}

/// One tunnel's share of [`Stats`]: counts it active (and in the total) for as long as
/// it lives, adds its bytes to both, and says what it moved for its line in the log.
pub(crate) struct Tally {
    stats: Arc<Stats>,
    out: AtomicU64,
    inn: AtomicU64,
    started: Instant,
}

impl Tally {
    pub(crate) fn new(stats: Arc<Stats>) -> Self {
        stats.active.fetch_add(1, Ordering::Relaxed);
        stats.total.fetch_add(1, Ordering::Relaxed);
        Self { stats, out: AtomicU64::new(0), inn: AtomicU64::new(0), started: Instant::now() }
    }

    /// Bytes from the local side into the tunnel.
    pub(crate) fn out(&self, n: usize) {
        self.out.fetch_add(n as u64, Ordering::Relaxed);
        self.stats.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Bytes from the tunnel to the local side.
    pub(crate) fn inn(&self, n: usize) {
        self.inn.fetch_add(n as u64, Ordering::Relaxed);
        self.stats.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts the tunnel as failed.
    pub(crate) fn failed(&self) {
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// `out 1.2 KiB, in 340 B, 2.5 s`.
    pub(crate) fn moved(&self) -> String {
        format!(
            "out {}, in {}, {}",
            human(self.out.load(Ordering::Relaxed) as f64),
            human(self.inn.load(Ordering::Relaxed) as f64),
            duration(self.started.elapsed())
        )
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        self.stats.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `850 ms`, `2.5 s`, `3 min 20 s`, `5 h 02 min`.
fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0 => format!("{} ms", d.as_millis()),
        1..60 => format!("{:.1} s", d.as_secs_f64()),
        60..3600 => format!("{} min {} s", secs / 60, secs % 60),
        _ => format!("{} h {:02} min", secs / 3600, secs / 60 % 60),
    }
}

/// A one-line spinner on stderr.
#[derive(Clone)]
pub struct StatusLine(ProgressBar, Arc<AtomicBool>, Arc<AtomicBool>);

impl Default for StatusLine {
    fn default() -> Self {
        Self::new()
    }
}

impl StatusLine {
    pub fn new() -> Self {
        let bar = ProgressBar::new_spinner();
        bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("static template"));
        Self(bar, Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)))
    }

    /// Redraws from `stats` (once they say so, [`Stats::show`]) until [`Self::finish`],
    /// through the drain at shutdown too.
    pub async fn run(self, stats: Arc<Stats>) {
        let mut last = (Instant::now(), 0, 0);
        let mut tick = tokio::time::interval(REFRESH);
        loop {
            tick.tick().await;
            if self.1.load(Ordering::Relaxed) {
                return;
            }
            if !stats.shown.load(Ordering::Relaxed) {
                continue;
            }
            let Totals { out, inn, .. } = stats.totals();
            let secs = last.0.elapsed().as_secs_f64().max(0.001);
            let rate_out = (out - last.1) as f64 / secs;
            let rate_in = (inn - last.2) as f64 / secs;
            last = (Instant::now(), out, inn);
            self.2.store(true, Ordering::Relaxed);
            self.0.set_message(status_text(&stats, rate_out, rate_in));
            self.0.tick();
        }
    }

    /// Whether the line is on the screen (log lines then go above it); before it is,
    /// nothing may draw it.
    fn drawn(&self) -> bool {
        self.2.load(Ordering::Relaxed) && !self.1.load(Ordering::Relaxed)
    }

    /// Clears the line for good.
    pub fn finish(&self) {
        self.1.store(true, Ordering::Relaxed);
        self.0.finish_and_clear();
    }
}

/// The status line's text: the note, the forwards (of a command that runs several) and
/// what their notes say, the control channels (a listener's), then tunnels and bytes each
/// way with their rates.
fn status_text(stats: &Stats, rate_out: f64, rate_in: f64) -> String {
    let mut parts = Vec::new();
    if let Some(note) = stats.note.lock().expect("note lock").clone() {
        parts.push(note);
    }
    let forwards = stats.forwards.lock().expect("forwards lock");
    if !forwards.is_empty() {
        let notes: Vec<String> = forwards
            .iter()
            .filter_map(|(name, f)| f.note.lock().expect("note lock").as_ref().map(|n| format!("{name}: {n}")))
            .collect();
        let channels: usize = forwards.iter().map(|(_, f)| *f.channels.borrow()).sum();
        let listeners = forwards.iter().filter(|(_, f)| f.listener.load(Ordering::Relaxed)).count();
        let mut head = match forwards.len() {
            1 => "1 forward".to_owned(),
            n => format!("{n} forwards"),
        };
        if listeners > 0 {
            head.push_str(&format!(", {channels} control channel{}", if channels == 1 { "" } else { "s" }));
        }
        parts.push(head);
        parts.extend(notes);
    }
    drop(forwards);
    if stats.listener.load(Ordering::Relaxed) {
        parts.push(match *stats.channels.borrow() {
            0 => "no control channel to the relay (reconnecting)".to_owned(),
            1 => "1 control channel to the relay".to_owned(),
            n => format!("{n} control channels to the relay"),
        });
        let public = stats.public.borrow();
        if !public.is_empty() {
            parts.push(format!("reachable at {}", public.join(", ")));
        }
    }
    let t = stats.totals();
    parts.push(format!("{} active / {} total tunnels, {} failed", t.active, t.total, t.failed));
    parts.push(format!("out {} ({}/s)", human(t.out as f64), human(rate_out)));
    parts.push(format!("in {} ({}/s)", human(t.inn as f64), human(rate_in)));
    parts.join(" | ")
}

/// Bytes with a binary unit: `1.5 MiB`.
pub(crate) fn human(bytes: f64) -> String {
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
        let line = one_line(&std::mem::take(&mut self.1));
        let write = || {
            let _ = std::io::stderr().lock().write_all(&line);
        };
        match &self.0 {
            Some(status) if status.drawn() => status.0.suspend(write),
            _ => write(),
        }
    }
}

/// An event's text made safe for a terminal or a log file: whatever a peer put in a
/// field (a tracking id, a rejection text, a path) cannot start a line of its own, move
/// the cursor or hide text. Line breaks and other control characters inside it are
/// written as escapes (`\r`, `\n`, `\u001b`, `\u202e`, as JSON writes them), except the event's final line
/// end and the formatter's own color codes (`ESC [ … m`).
fn one_line(event: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(event);
    let (body, end) = match text.strip_suffix('\n') {
        Some(body) => (body, "\n"),
        None => (&*text, ""),
    };
    let mut out = String::with_capacity(body.len() + 1);
    let mut chars = body.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\x1b'
            && let Some(sgr) = color_code(&body[i..])
        {
            out.push_str(sgr);
            for _ in 1..sgr.len() {
                chars.next();
            }
            continue;
        }
        match c {
            '\t' => out.push(c),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') => {
                // `\u001b`: readable here, and a valid escape inside a JSON log's strings.
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push_str(end);
    out.into_bytes()
}

/// The color code at the start of `text` (`ESC [` digits and `;`, then `m`), if it is one.
fn color_code(text: &str) -> Option<&str> {
    let params = text.strip_prefix("\x1b[")?;
    let n = params.bytes().take_while(|b| b.is_ascii_digit() || *b == b';').count();
    (params.as_bytes().get(n) == Some(&b'm')).then(|| &text[..2 + n + 1])
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
    fn a_log_event_stays_one_line_whatever_its_fields_hold() {
        let event = "\x1b[2m2026\x1b[0m \x1b[32m INFO\x1b[0m tunnel{id=a\r\nFAKE 2026 ERROR owned}: rejecting: \x1b[2J\x1b[1Agone\u{202e}txt\u{7}\n";
        let safe = String::from_utf8(one_line(event.as_bytes())).unwrap();
        assert_eq!(safe.lines().count(), 1, "{safe}");
        assert!(safe.ends_with('\n') && !safe[..safe.len() - 1].contains(['\n', '\r']), "{safe:?}");
        assert!(safe.starts_with("\x1b[2m2026\x1b[0m \x1b[32m INFO\x1b[0m"), "colors stay: {safe:?}");
        assert!(safe.contains("id=a\\r\\nFAKE"), "{safe:?}");
        assert!(!safe.contains("\x1b[2J") && !safe.contains("\x1b[1A"), "no cursor or screen control: {safe:?}");
        assert!(safe.contains("\\u001b[2J") && safe.contains("\\u202e") && safe.contains("\\u0007"), "{safe:?}");
        // A JSON event keeps its shape: JSON already escapes control characters, and the
        // bidi escape is one JSON understands.
        let json = "{\"fields\":{\"message\":\"x\\u001b \u{202e}y\"}}\n";
        let safe = String::from_utf8(one_line(json.as_bytes())).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&safe).expect("still JSON");
        assert_eq!(parsed["fields"]["message"], "x\u{1b} \u{202e}y");
        assert_eq!(one_line(b"plain, no newline"), b"plain, no newline");
        assert_eq!(one_line("tab\tand caf\u{e9}\n".as_bytes()), "tab\tand caf\u{e9}\n".as_bytes());
    }

    #[test]
    fn the_status_line_says_what_it_counts() {
        let stats = Stats::default();
        assert_eq!(
            status_text(&stats, 0.0, 0.0),
            "0 active / 0 total tunnels, 0 failed | out 0 B (0 B/s) | in 0 B (0 B/s)"
        );
        stats.set_listener();
        assert!(status_text(&stats, 0.0, 0.0).starts_with("no control channel to the relay (reconnecting) | "));
        stats.channels.send_replace(1);
        stats.set_note(Some("stopping".into()));
        assert!(status_text(&stats, 0.0, 0.0).starts_with("stopping | 1 control channel to the relay | 0 active"));
        let tally = Tally::new(Arc::new(Stats::default()));
        tally.out(1536);
        tally.inn(3);
        assert!(tally.moved().starts_with("out 1.5 KiB, in 3 B, "), "{}", tally.moved());
    }

    #[test]
    fn forwards_add_up_and_say_what_is_wrong_with_each() {
        let all = Stats::default();
        let web = all.forward("web");
        let dns = all.forward("dns");
        dns.set_listener();
        dns.channels.send_replace(2);
        let a = Tally::new(web.clone());
        a.out(1024);
        let b = Tally::new(dns.clone());
        b.inn(2048);
        b.failed();
        dns.set_note(Some("retrying in 5 s".into()));
        assert_eq!(
            status_text(&all, 0.0, 0.0),
            "2 forwards, 2 control channels | dns: retrying in 5 s | 2 active / 2 total tunnels, 1 failed \
             | out 1.0 KiB (0 B/s) | in 2.0 KiB (0 B/s)"
        );
        drop(a);
        assert_eq!(all.totals().active, 1);
        assert!(all.summary().starts_with("2 tunnels (1 failed), out 1.0 KiB, in 2.0 KiB, over "), "{}", all.summary());
    }

    #[test]
    fn a_retired_forward_leaves_the_line_and_keeps_its_counts_in_the_totals() {
        let all = Stats::default();
        let web = all.forward("web");
        let _dns = all.forward("dns");
        Tally::new(web.clone()).out(1024);
        web.failed.fetch_add(1, Ordering::Relaxed);
        let before = all.totals();
        all.retire_forward("web");
        assert_eq!(all.totals(), before);
        let names: Vec<String> = all.forwards.lock().unwrap().iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(names, ["dns"]);
        all.retire_forward("nothing");
        assert_eq!(all.totals(), before);
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration(Duration::from_millis(850)), "850 ms");
        assert_eq!(duration(Duration::from_millis(2500)), "2.5 s");
        assert_eq!(duration(Duration::from_secs(200)), "3 min 20 s");
        assert_eq!(duration(Duration::from_secs(5 * 3600 + 120)), "5 h 02 min");
    }

    #[test]
    fn human_units() {
        assert_eq!(human(0.0), "0 B");
        assert_eq!(human(1536.0), "1.5 KiB");
        assert_eq!(human(3.0 * 1024.0 * 1024.0 * 1024.0), "3.0 GiB");
    }
}

//! The `top` screen: the columns, their order and sorting, the table cut to the terminal's
//! width, and the refresh loop (raw keyboard through termios, ANSI escapes; no curses).

use std::io::Write;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use unicode_width::UnicodeWidthStr;

use super::Row;
use crate::cmd::exporter::sample::Sample;
use crate::host::domstats::Counters;
use crate::support::error::{Error, Result};
use crate::support::text::printable;

/// A column of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Column {
    Domain,
    Cpu,
    /// The counters' mark: blank when complete, PART, or ? when unknown.
    Counters,
    Ipc,
    Miss,
    Event(String),
}

/// The events in the order libvirt lists them; others follow by name.
const EVENT_ORDER: [(&str, &str); 22] = [
    ("cmt", "CMT"),
    ("mbmt", "MBMT"),
    ("mbml", "MBML"),
    ("cpu_cycles", "CYCLES"),
    ("instructions", "INSTR"),
    ("cache_references", "CREF"),
    ("cache_misses", "CMISS"),
    ("branch_instructions", "BRANCH"),
    ("branch_misses", "BRMISS"),
    ("bus_cycles", "BUSCYC"),
    ("stalled_cycles_frontend", "STALLFE"),
    ("stalled_cycles_backend", "STALLBE"),
    ("ref_cpu_cycles", "REFCYC"),
    ("cpu_clock", "CPUCLK"),
    ("task_clock", "TASKCLK"),
    ("page_faults", "PGFLT"),
    ("context_switches", "CSW"),
    ("cpu_migrations", "MIGR"),
    ("page_faults_min", "MINFLT"),
    ("page_faults_maj", "MAJFLT"),
    ("alignment_faults", "ALIGN"),
    ("emulation_faults", "EMUL"),
];

impl Column {
    fn header(&self) -> String {
        match self {
            Column::Domain => "DOMAIN".into(),
            Column::Cpu => "CPU%".into(),
            Column::Counters => "CTR".into(),
            Column::Ipc => "IPC".into(),
            Column::Miss => "MISS%".into(),
            Column::Event(e) => EVENT_ORDER.iter().find(|(n, _)| n == e).map_or_else(|| e.to_uppercase(), |(_, h)| h.to_string()),
        }
    }

    /// The name `--sort` takes.
    fn name(&self) -> &str {
        match self {
            Column::Domain => "name",
            Column::Cpu => "cpu",
            Column::Counters => "counters",
            Column::Ipc => "ipc",
            Column::Miss => "miss",
            Column::Event(e) => e,
        }
    }

    fn value(&self, r: &Row) -> Option<f64> {
        match self {
            Column::Domain => None,
            Column::Cpu => Some(r.cpu_percent),
            Column::Counters => Some(match r.counters {
                Some(Counters::Partial) => 2.0,
                Some(Counters::Unknown) => 1.0,
                _ => 0.0,
            }),
            Column::Ipc => r.ipc,
            Column::Miss => r.cache_miss_percent,
            Column::Event(e) => r.rates.get(e).copied(),
        }
    }

    fn cell(&self, r: &Row) -> String {
        match self {
            Column::Domain => printable(&r.domain),
            Column::Counters => match r.counters {
                Some(Counters::Partial) => "PART".into(),
                Some(Counters::Unknown) => "?".into(),
                _ => String::new(),
            },
            Column::Cpu => format!("{:.1}", r.cpu_percent),
            Column::Ipc => r.ipc.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into()),
            Column::Miss => r.cache_miss_percent.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into()),
            Column::Event(e) if e.ends_with("_clock") => r.rates.get(e).map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into()),
            Column::Event(e) => r.rates.get(e).map(|v| human(*v)).unwrap_or_else(|| "-".into()),
        }
    }
}

/// A rate in at most 6 characters: 950, 12.3k, 4.56M, 1.23G.
pub fn human(v: f64) -> String {
    let units = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")];
    match units.iter().find(|(f, _)| v >= *f) {
        Some((f, u)) if v / f >= 100.0 => format!("{:.0}{u}", v / f),
        Some((f, u)) => format!("{:.3}", v / f).chars().take(4).collect::<String>().trim_end_matches('.').to_string() + u,
        None => format!("{v:.0}"),
    }
}

/// The columns for these rows: the fixed ones, the ratios that exist, then every event.
pub fn columns(rows: &[Row]) -> Vec<Column> {
    let mut cols = vec![Column::Domain, Column::Cpu, Column::Counters];
    if rows.iter().any(|r| r.ipc.is_some()) {
        cols.push(Column::Ipc);
    }
    if rows.iter().any(|r| r.cache_miss_percent.is_some()) {
        cols.push(Column::Miss);
    }
    let mut events: Vec<&String> = rows.iter().flat_map(|r| r.rates.keys()).collect();
    let rank = |e: &str| EVENT_ORDER.iter().position(|(n, _)| *n == e).unwrap_or(EVENT_ORDER.len());
    events.sort_by(|a, b| (rank(a), a).cmp(&(rank(b), b)));
    events.dedup();
    cols.extend(events.into_iter().map(|e| Column::Event(e.clone())));
    cols
}

/// The sort column (by its `--sort` name) and direction; `top`'s keys change it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sort {
    key: String,
    reverse: bool,
}

impl Sort {
    pub fn parse(name: Option<&str>) -> Result<Sort> {
        let key = name.unwrap_or("cpu").to_ascii_lowercase();
        let key = if key == "domain" { "name".to_string() } else { key };
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            return Err(Error::Usage(format!("top: --sort '{}': give name, cpu, counters, ipc, miss or an event name", printable(&key))));
        }
        Ok(Sort { key, reverse: false })
    }

    /// Sorts `rows`: numbers largest first (a missing value last), names A to Z; `R` flips.
    /// A column no row has sorts by CPU.
    pub fn apply(&self, rows: &mut [Row], cols: &[Column]) {
        let col = cols.iter().find(|c| c.name() == self.key).cloned().unwrap_or(Column::Cpu);
        rows.sort_by(|a, b| {
            let ord = if col == Column::Domain {
                a.domain.cmp(&b.domain)
            } else {
                let (x, y) = (col.value(a).unwrap_or(f64::NEG_INFINITY), col.value(b).unwrap_or(f64::NEG_INFINITY));
                y.total_cmp(&x).then_with(|| a.domain.cmp(&b.domain))
            };
            if self.reverse {
                ord.reverse()
            } else {
                ord
            }
        });
    }

    /// Handles a key; `false` for one that quits.
    fn key(&mut self, k: u8, cols: &[Column]) -> bool {
        let at = cols.iter().position(|c| c.name() == self.key).unwrap_or(1);
        match k {
            b'q' | b'Q' | 3 | 4 => return false,
            b'P' => self.key = "cpu".into(),
            b'N' => self.key = "name".into(),
            b'I' => self.key = "ipc".into(),
            b'R' => self.reverse = !self.reverse,
            b'<' if at > 0 => self.key = cols[at - 1].name().to_string(),
            b'>' if at + 1 < cols.len() => self.key = cols[at + 1].name().to_string(),
            _ => {}
        }
        true
    }
}

/// The table lines: the header and up to `max_rows` rows, sorted, cut to `width` columns
/// (columns that do not fit are left out, the last line says how many).
pub fn table(rows: &mut [Row], sort: &Sort, width: usize, max_rows: usize) -> Vec<String> {
    let cols = columns(rows);
    sort.apply(rows, &cols);
    let name_w = rows.iter().map(|r| printable(&r.domain).width()).max().unwrap_or(0).clamp(6, 20);
    let mut shown: Vec<(Column, usize)> = Vec::new();
    let mut used = 0;
    for c in &cols {
        let w = match c {
            Column::Domain => name_w,
            Column::Counters => 4,
            _ => c.header().len().max(6),
        };
        let need = if shown.is_empty() { w } else { w + 1 };
        if used + need > width {
            break;
        }
        used += need;
        shown.push((c.clone(), w));
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for ((c, w), cell) in shown.iter().zip(cells) {
            if !s.is_empty() {
                s.push(' ');
            }
            let cell = fit(&cell, *w);
            let pad = " ".repeat(w.saturating_sub(cell.width()));
            if matches!(c, Column::Domain | Column::Counters) {
                s.push_str(&cell);
                s.push_str(&pad);
            } else {
                s.push_str(&pad);
                s.push_str(&cell);
            }
        }
        s.trim_end().to_string()
    };
    let mut out = vec![line(shown.iter().map(|(c, _)| c.header()).collect())];
    out.extend(rows.iter().take(max_rows).map(|r| line(shown.iter().map(|(c, _)| c.cell(r)).collect())));
    if shown.len() < cols.len() {
        out.push(fit(&format!("({} more columns: widen the terminal, or --once --json)", cols.len() - shown.len()), width));
    }
    out
}

/// `s` cut to `w` display columns.
fn fit(s: &str, w: usize) -> String {
    let mut out = String::new();
    for ch in s.chars() {
        if (out.clone() + &ch.to_string()).width() > w {
            break;
        }
        out.push(ch);
    }
    out
}

/// The terminal's width and height (80x24 when it cannot be told).
pub fn size() -> (usize, usize) {
    let mut ws = nix::libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one winsize into the struct given.
    let ok = unsafe { nix::libc::ioctl(1, nix::libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_col > 0 && ws.ws_row > 0 {
        (usize::from(ws.ws_col), usize::from(ws.ws_row))
    } else {
        (80, 24)
    }
}

static STOP: AtomicBool = AtomicBool::new(false);
static RESIZED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(sig: nix::libc::c_int) {
    if sig == nix::libc::SIGWINCH {
        RESIZED.store(true, Ordering::Relaxed);
    } else {
        STOP.store(true, Ordering::Relaxed);
    }
}

/// The terminal as found, put back on drop (also when a sample fails).
struct Raw(nix::sys::termios::Termios);

impl Drop for Raw {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(std::io::stdin(), nix::sys::termios::SetArg::TCSANOW, &self.0);
        let _ = std::io::stdout().write_all(b"\x1b[?25h\x1b[?1049l");
        let _ = std::io::stdout().flush();
    }
}

fn raw_terminal() -> Result<Raw> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let tty = |fd: std::os::fd::BorrowedFd<'_>| nix::unistd::isatty(fd).unwrap_or(false);
    if !tty(std::io::stdin().as_fd()) || !tty(std::io::stdout().as_fd()) {
        return Err(Error::Usage("top: needs a terminal; for scripts use 'top --once' (or --once --json)".into()));
    }
    let before = tcgetattr(std::io::stdin()).map_err(|e| Error::Other(format!("cannot read the terminal's settings: {e}")))?;
    let mut raw = before.clone();
    raw.local_flags.remove(LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ISIG);
    tcsetattr(std::io::stdin(), SetArg::TCSANOW, &raw).map_err(|e| Error::Other(format!("cannot set up the terminal: {e}")))?;
    let guard = Raw(before);
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let act = SigAction::new(SigHandler::Handler(on_signal), SaFlags::empty(), SigSet::empty());
    for sig in [Signal::SIGTERM, Signal::SIGHUP, Signal::SIGWINCH] {
        // SAFETY: the handler only stores to atomics.
        let _ = unsafe { sigaction(sig, &act) };
    }
    let _ = std::io::stdout().write_all(b"\x1b[?1049h\x1b[?25l");
    Ok(guard)
}

/// Draws `lines` from the top left, each cut to the width, never past the last line.
fn draw(lines: &[String]) {
    let (width, height) = size();
    let text: Vec<String> = lines.iter().take(height).map(|l| format!("{}\x1b[K", fit(l, width))).collect();
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "\x1b[H{}\x1b[J", text.join("\r\n"));
    let _ = out.flush();
}

fn screen(rows: &mut [Row], sort: &Sort, interval: Duration, note: &str) -> Vec<String> {
    let (width, height) = size();
    let partial = rows.iter().filter(|r| r.counters == Some(Counters::Partial)).count();
    let mut lines = vec![format!(
        "virt-perf-hook top: {} guests, every {:.1} s, sort {}{} | P N I < > R q",
        rows.len(),
        interval.as_secs_f64(),
        sort.key,
        if sort.reverse { " (reversed)" } else { "" }
    )];
    lines.push(if partial > 0 {
        format!("PART: {partial} with partial counters (opened on the running guest): their rates undercount")
    } else {
        note.to_string()
    });
    lines.extend(table(rows, sort, width, height.saturating_sub(3)));
    lines
}

/// The refresh loop: a sample every `interval`, keys read in between.
pub fn run(take: &mut dyn FnMut() -> Result<Sample>, interval: Duration, mut sort: Sort) -> Result<i32> {
    let _raw = raw_terminal()?;
    let mut before = take()?;
    let mut rows: Vec<Row> = Vec::new();
    let mut note = format!("sampling for {:.1} s…", interval.as_secs_f64());
    let mut next = Instant::now() + interval;
    draw(&screen(&mut rows, &sort, interval, &note));
    loop {
        if STOP.load(Ordering::Relaxed) {
            return Ok(0);
        }
        let left = next.saturating_duration_since(Instant::now());
        let stdin = std::io::stdin();
        let mut fds = [nix::poll::PollFd::new(stdin.as_fd(), nix::poll::PollFlags::POLLIN)];
        let ms = nix::poll::PollTimeout::try_from(left.as_millis().min(60_000) as u32).unwrap_or(nix::poll::PollTimeout::MAX);
        if matches!(nix::poll::poll(&mut fds, ms), Ok(n) if n > 0) {
            let mut buf = [0u8; 16];
            let n = nix::unistd::read(std::io::stdin().as_fd(), &mut buf).unwrap_or(0);
            if n == 0 {
                return Ok(0);
            }
            let cols = columns(&rows);
            if !buf[..n].iter().all(|&k| sort.key(k, &cols)) {
                return Ok(0);
            }
        } else if Instant::now() >= next {
            match take() {
                Ok(after) => {
                    rows = super::rows(&before, &after);
                    before = after;
                    note = String::new();
                }
                Err(e) => note = format!("{e}"),
            }
            next += interval;
            if next < Instant::now() {
                next = Instant::now() + interval;
            }
        } else if !RESIZED.swap(false, Ordering::Relaxed) {
            continue;
        }
        draw(&screen(&mut rows, &sort, interval, &note));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, cpu: f64, counters: Option<Counters>) -> Row {
        let rates = [("page_faults".to_string(), cpu * 10.0), ("task_clock".to_string(), cpu / 100.0)].into_iter().collect();
        Row { domain: name.into(), uuid: String::new(), cpu_percent: cpu, counters, rates, ipc: None, cache_miss_percent: None }
    }

    #[test]
    fn sorts_and_fits() {
        let mut rows = vec![row("idle", 1.0, Some(Counters::Complete)), row("busy", 99.5, Some(Counters::Partial)), row("a", 50.0, None)];
        let mut sort = Sort::parse(None).unwrap();
        let t = table(&mut rows, &sort, 80, 10);
        assert_eq!(t[0], "DOMAIN   CPU% CTR  TASKCLK  PGFLT");
        assert!(t[1].starts_with("busy     99.5 PART"), "{t:?}");
        assert!(t[3].starts_with("idle      1.0"), "{t:?}");
        let cols = columns(&rows);
        assert!(sort.key(b'N', &cols));
        assert_eq!(table(&mut rows, &sort, 80, 10)[1].split(' ').next(), Some("a"));
        assert!(sort.key(b'R', &cols) && sort.key(b'>', &cols));
        assert_eq!(sort.key, "cpu");
        assert!(!sort.key(b'q', &cols));
        // A narrow terminal drops columns and says so; no line is wider than it.
        let t = table(&mut rows, &Sort::parse(Some("page_faults")).unwrap(), 24, 10);
        assert!(t.iter().all(|l| l.width() <= 24), "{t:?}");
        assert!(t.last().unwrap().starts_with("(2 more"), "{t:?}");
        assert!(t[1].starts_with("busy"));
        assert!(Sort::parse(Some("a b")).is_err());
    }

    #[test]
    fn humane_numbers() {
        assert_eq!(human(950.0), "950");
        assert_eq!(human(12_345.0), "12.3k");
        assert_eq!(human(4_560_000.0), "4.56M");
        assert_eq!(human(123_000_000.0), "123M");
        assert_eq!(human(1e9), "1.00G");
    }
}

//! The lifecycle event stream of `virsh event --loop --event lifecycle [--timestamp]`, typed.
//!
//! virsh prints `event 'lifecycle' for domain 'NAME': EVENT DETAIL\n` (tools/virsh-domain-event.c,
//! LC_ALL=C), where EVENT is one word and DETAIL one or more (`Shutdown Finished after host
//! request`, `Suspended I/O Error`). Names are printed unescaped and may hold `'` or `: `, but
//! neither an event nor a detail holds `': `, so the name is what lies between the prefix and
//! the last `': `. A detail this table does not know (a newer libvirt) is [`Detail::Other`],
//! so the stream never has to guess.

use std::io::BufRead;

/// The event word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Defined,
    Undefined,
    Started,
    Suspended,
    Resumed,
    Stopped,
    Shutdown,
    PMSuspended,
    Crashed,
    /// `unknown` or a word a newer libvirt added.
    Other(String),
}

/// The detail words, per event (libvirt 9's strings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detail {
    Added,
    Updated,
    Renamed,
    Snapshot,
    Removed,
    Booted,
    Migrated,
    Restored,
    EventWakeup,
    Paused,
    IoError,
    Watchdog,
    ApiError,
    PostCopy,
    PostCopyError,
    Unpaused,
    Shutdown,
    Destroyed,
    Crashed,
    Saved,
    Failed,
    Finished,
    FinishedAfterGuestRequest,
    FinishedAfterHostRequest,
    Memory,
    Disk,
    Panicked,
    Crashloaded,
    /// `unknown`, or words a newer libvirt added.
    Other(String),
}

/// An event word and how to make it (a fn: `Event` is not `Copy`).
type Maker = fn() -> Event;

const EVENTS: &[(&str, Maker)] = &[
    ("Defined", || Event::Defined),
    ("Undefined", || Event::Undefined),
    ("Started", || Event::Started),
    ("Suspended", || Event::Suspended),
    ("Resumed", || Event::Resumed),
    ("Stopped", || Event::Stopped),
    ("Shutdown", || Event::Shutdown),
    ("PMSuspended", || Event::PMSuspended),
    ("Crashed", || Event::Crashed),
];

const DETAILS: &[(&str, Detail)] = &[
    ("Added", Detail::Added),
    ("Updated", Detail::Updated),
    ("Renamed", Detail::Renamed),
    ("Snapshot", Detail::Snapshot),
    ("Removed", Detail::Removed),
    ("Booted", Detail::Booted),
    ("Migrated", Detail::Migrated),
    ("Restored", Detail::Restored),
    ("Event wakeup", Detail::EventWakeup),
    ("Paused", Detail::Paused),
    ("I/O Error", Detail::IoError),
    ("Watchdog", Detail::Watchdog),
    ("API error", Detail::ApiError),
    ("Post-copy", Detail::PostCopy),
    ("Post-copy Error", Detail::PostCopyError),
    ("Unpaused", Detail::Unpaused),
    ("Shutdown", Detail::Shutdown),
    ("Destroyed", Detail::Destroyed),
    ("Crashed", Detail::Crashed),
    ("Saved", Detail::Saved),
    ("Failed", Detail::Failed),
    ("Finished", Detail::Finished),
    ("Finished after guest request", Detail::FinishedAfterGuestRequest),
    ("Finished after host request", Detail::FinishedAfterHostRequest),
    ("Memory", Detail::Memory),
    ("Disk", Detail::Disk),
    ("Panicked", Detail::Panicked),
    ("Crashloaded", Detail::Crashloaded),
];

impl Event {
    fn parse(word: &str) -> Event {
        EVENTS.iter().find(|(w, _)| *w == word).map_or_else(|| Event::Other(word.to_string()), |(_, e)| e())
    }
}

impl Detail {
    fn parse(words: &str) -> Detail {
        DETAILS.iter().find(|(w, _)| *w == words).map_or_else(|| Detail::Other(words.to_string()), |(_, d)| d.clone())
    }
}

/// One lifecycle event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lifecycle {
    pub domain: String,
    pub event: Event,
    pub detail: Detail,
}

/// One line of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Lifecycle(Lifecycle),
    /// `events received: N` (virsh's last line when its connection ends) or a blank line.
    Noise,
    /// Anything else (a name with a newline, a format change): the caller must not guess.
    Unparsable(String),
}

const PREFIX: &str = "event 'lifecycle' for domain '";
const RECEIVED: &str = "events received: ";

/// Parses one line (its newline optional).
pub fn parse_line(line: &str) -> Line {
    let line = line.strip_suffix('\n').unwrap_or(line);
    if line.is_empty() || line.strip_prefix(RECEIVED).is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) {
        return Line::Noise;
    }
    parse_lifecycle(line).map_or_else(|| Line::Unparsable(line.to_string()), Line::Lifecycle)
}

fn parse_lifecycle(line: &str) -> Option<Lifecycle> {
    let start = line.find(PREFIX)?;
    // `--timestamp` puts `2026-11-25 13:00:00.000+0000: ` before the prefix; nothing else may.
    if start > 0 && !line[..start].ends_with(": ") {
        return None;
    }
    let rest = &line[start + PREFIX.len()..];
    let (domain, tail) = rest.rsplit_once("': ")?;
    let (event, detail) = tail.split_once(' ')?;
    let printable = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    if !event.bytes().all(|b| b.is_ascii_alphabetic()) || event.is_empty() || !printable(detail) || detail.trim() != detail || detail.contains("  ") {
        return None;
    }
    Some(Lifecycle { domain: domain.to_string(), event: Event::parse(event), detail: Detail::parse(detail) })
}

/// The lines of a stream as they arrive, parsed; ends with the stream (or a read error).
pub fn lines<R: BufRead>(reader: R) -> impl Iterator<Item = Line> {
    reader.lines().map_while(|l| l.ok()).map(|l| parse_line(&l))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(line: &str) -> (Event, Detail) {
        match parse_line(line) {
            Line::Lifecycle(l) => (l.event, l.detail),
            other => panic!("{line:?}: {other:?}"),
        }
    }

    /// Every event and detail string libvirt 9's virsh prints (tools/virsh-domain-event.c).
    #[test]
    fn every_lifecycle_string_of_libvirt_9() {
        use Detail as D;
        use Event as E;
        let table: &[(&str, E, D)] = &[
            ("Defined Added", E::Defined, D::Added),
            ("Defined Updated", E::Defined, D::Updated),
            ("Defined Renamed", E::Defined, D::Renamed),
            ("Defined Snapshot", E::Defined, D::Snapshot),
            ("Undefined Removed", E::Undefined, D::Removed),
            ("Undefined Renamed", E::Undefined, D::Renamed),
            ("Started Booted", E::Started, D::Booted),
            ("Started Migrated", E::Started, D::Migrated),
            ("Started Restored", E::Started, D::Restored),
            ("Started Snapshot", E::Started, D::Snapshot),
            ("Started Event wakeup", E::Started, D::EventWakeup),
            ("Suspended Paused", E::Suspended, D::Paused),
            ("Suspended Migrated", E::Suspended, D::Migrated),
            ("Suspended I/O Error", E::Suspended, D::IoError),
            ("Suspended Watchdog", E::Suspended, D::Watchdog),
            ("Suspended Restored", E::Suspended, D::Restored),
            ("Suspended Snapshot", E::Suspended, D::Snapshot),
            ("Suspended API error", E::Suspended, D::ApiError),
            ("Suspended Post-copy", E::Suspended, D::PostCopy),
            ("Suspended Post-copy Error", E::Suspended, D::PostCopyError),
            ("Resumed Unpaused", E::Resumed, D::Unpaused),
            ("Resumed Migrated", E::Resumed, D::Migrated),
            ("Resumed Snapshot", E::Resumed, D::Snapshot),
            ("Resumed Post-copy", E::Resumed, D::PostCopy),
            ("Resumed Post-copy Error", E::Resumed, D::PostCopyError),
            ("Stopped Shutdown", E::Stopped, D::Shutdown),
            ("Stopped Destroyed", E::Stopped, D::Destroyed),
            ("Stopped Crashed", E::Stopped, D::Crashed),
            ("Stopped Migrated", E::Stopped, D::Migrated),
            ("Stopped Saved", E::Stopped, D::Saved),
            ("Stopped Failed", E::Stopped, D::Failed),
            ("Stopped Snapshot", E::Stopped, D::Snapshot),
            ("Shutdown Finished", E::Shutdown, D::Finished),
            ("Shutdown Finished after guest request", E::Shutdown, D::FinishedAfterGuestRequest),
            ("Shutdown Finished after host request", E::Shutdown, D::FinishedAfterHostRequest),
            ("PMSuspended Memory", E::PMSuspended, D::Memory),
            ("PMSuspended Disk", E::PMSuspended, D::Disk),
            ("Crashed Panicked", E::Crashed, D::Panicked),
            ("Crashed Crashloaded", E::Crashed, D::Crashloaded),
            // What virsh prints for numbers it has no string for.
            ("unknown unknown", E::Other("unknown".into()), D::Other("unknown".into())),
            ("Defined unknown", E::Defined, D::Other("unknown".into())),
            ("Started Some new thing", E::Started, D::Other("Some new thing".into())),
        ];
        for (tail, e, d) in table {
            let line = format!("event 'lifecycle' for domain 'vm 1': {tail}\n");
            assert_eq!(ev(&line), (e.clone(), d.clone()), "{line:?}");
        }
    }

    #[test]
    fn names_timestamps_and_noise() {
        let Line::Lifecycle(l) = parse_line("2026-11-25 13:00:00.123+0000: event 'lifecycle' for domain 'a b': Started Booted") else { panic!() };
        assert_eq!(l.domain, "a b");
        // Quotes and ': ' inside the name: the last `': ` splits.
        let Line::Lifecycle(l) = parse_line("event 'lifecycle' for domain 'it's: x': Shutdown Finished after host request") else { panic!() };
        assert_eq!((l.domain.as_str(), l.detail), ("it's: x", Detail::FinishedAfterHostRequest));
        let Line::Lifecycle(l) = parse_line("event 'lifecycle' for domain 'a': Defined Added': Defined Renamed") else { panic!() };
        assert_eq!((l.domain.as_str(), l.detail), ("a': Defined Added", Detail::Renamed));
        assert_eq!(parse_line("events received: 12"), Line::Noise);
        assert_eq!(parse_line(""), Line::Noise);
        for bad in [
            "events received: many",
            "event 'lifecycle' for domain 'half",
            "event 'lifecycle' for domain 'x': Defined",
            "event 'lifecycle' for domain 'x': Defined ",
            "event 'lifecycle' for domain 'x': Defined  Added",
            "junk event 'lifecycle' for domain 'x': Defined Added",
            "event 'reboot' for domain 'x'",
            "b': Defined Added",
        ] {
            assert!(matches!(parse_line(bad), Line::Unparsable(_)), "{bad:?}");
        }
        let got: Vec<Line> = lines(&b"event 'lifecycle' for domain 'a': Defined Added\n\nx\n"[..]).collect();
        assert_eq!(got.len(), 3);
    }
}

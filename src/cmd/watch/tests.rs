use std::process::{Command, Stdio};

use super::*;

fn line(text: &str) -> Line {
    event::parse_line(text)
}

#[test]
fn actions() {
    assert_eq!(action(&line("event 'lifecycle' for domain 'a': Defined Updated")), Action::Fix("a".into()));
    assert_eq!(action(&line("event 'lifecycle' for domain 'a': Defined Snapshot")), Action::Fix("a".into()));
    assert_eq!(action(&line("event 'lifecycle' for domain 'a': Started Restored")), Action::Started("a".into()));
    assert_eq!(action(&line("event 'lifecycle' for domain 'a': Undefined Removed")), Action::Ignore);
    assert_eq!(action(&line("event 'lifecycle' for domain 'a': Stopped Destroyed")), Action::Ignore);
    // Issue 21: a shutdown's four-word detail is no reason to sweep.
    assert_eq!(action(&line("event 'lifecycle' for domain 'vph1': Shutdown Finished after host request")), Action::Ignore);
    // The second half of a name with a newline.
    assert_eq!(action(&line("b': Defined Added")), Action::Sweep);
    // virsh's last line when the daemon goes away: the outage is logged, not a sweep.
    assert_eq!(action(&line("events received: 12")), Action::Ignore);
    assert_eq!(action(&line("")), Action::Ignore);
    assert_eq!(action(&line("events received: many")), Action::Sweep);
}

#[test]
fn backoff_doubles_to_the_cap_and_resets() {
    let mut b = Backoff::new(Duration::from_secs(10));
    let d: Vec<u64> = (0..6).map(|_| b.delay().as_secs()).collect();
    assert_eq!(d, vec![1, 2, 4, 8, 10, 10]);
    b.reset();
    assert_eq!(b.delay().as_secs(), 1);
}

#[derive(Default)]
struct Recorder {
    calls: Vec<String>,
    sweep_fails: usize,
}

impl Guests for Recorder {
    fn sweep(&mut self) -> Result<()> {
        self.calls.push("sweep".into());
        if self.sweep_fails > 0 {
            self.sweep_fails -= 1;
            return Err(Error::Other("no daemon".into()));
        }
        Ok(())
    }
    fn fix(&mut self, domains: &[String]) -> Result<()> {
        self.calls.push(format!("fix {}", domains.join(" ")));
        Ok(())
    }
    fn started(&mut self, domain: &str) {
        self.calls.push(format!("started {domain}"));
    }
    fn reload(&mut self) {
        self.calls.push("reload".into());
    }
}

struct Script(Vec<&'static str>);

impl Stream for Script {
    fn spawn(&mut self) -> Result<Child> {
        let text = if self.0.is_empty() { String::new() } else { self.0.remove(0).to_string() };
        Command::new("sh")
            .args(["-c", "printf '%s' \"$1\"; exit 1", "sh", &text])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::Other(e.to_string()))
    }
}

fn inbox() -> (mpsc::Sender<Input>, mpsc::Receiver<Input>) {
    mpsc::channel()
}

#[test]
fn sweeps_on_every_connect_and_fixes_a_burst_in_one_call() {
    let mut rec = Recorder::default();
    let mut stream = Script(vec![
        "event 'lifecycle' for domain 'a': Defined Added\nevent 'lifecycle' for domain 'a': Defined Updated\n\
         event 'lifecycle' for domain 'c': Defined Added\n\
         event 'lifecycle' for domain 'b': Started Booted\nevent 'lifecycle' for domain 'b': Started Restored\n",
        "event 'lifecycle' for domain 'b': Started Booted\n",
    ]);
    let stopped = run_loop(&mut stream, &mut rec, Duration::from_millis(1), inbox(), Some(2));
    assert_eq!(stopped.streams, 2);
    assert_eq!(rec.calls.first().map(String::as_str), Some("sweep"));
    assert_eq!(rec.calls.iter().filter(|c| *c == "sweep").count(), 2, "{:?}", rec.calls);
    assert!(rec.calls.contains(&"fix a c".to_string()), "one batched fix: {:?}", rec.calls);
    assert_eq!(rec.calls.iter().filter(|c| *c == "started b").count(), 1, "{:?}", rec.calls);
}

#[test]
fn sighup_reloads_and_sweeps_while_the_stream_is_quiet() {
    struct Quiet;
    impl Stream for Quiet {
        fn spawn(&mut self) -> Result<Child> {
            Command::new("sh")
                .args(["-c", "sleep 0.6"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| Error::Other(e.to_string()))
        }
    }
    let mut rec = Recorder::default();
    let (tx, rx) = inbox();
    tx.send(Input::Reload).unwrap();
    run_loop(&mut Quiet, &mut rec, Duration::from_millis(1), (tx, rx), Some(1));
    assert_eq!(rec.calls, vec!["sweep", "reload", "sweep"]);
}

#[test]
fn a_stop_ends_the_loop_at_once() {
    struct Forever;
    impl Stream for Forever {
        fn spawn(&mut self) -> Result<Child> {
            Command::new("sleep").arg("30").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(|e| Error::Other(e.to_string()))
        }
    }
    let mut rec = Recorder::default();
    let (tx, rx) = inbox();
    let t = tx.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        let _ = t.send(Input::Stop);
    });
    let started = Instant::now();
    run_loop(&mut Forever, &mut rec, Duration::from_millis(1), (tx, rx), None);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(rec.calls, vec!["sweep"]);
}

#[test]
fn ambiguous_names_are_swept_not_looked_up() {
    assert!(ambiguous("42"));
    assert!(ambiguous("6695eb01-f6a4-8304-79aa-97f2502e193f"));
    assert!(!ambiguous("web-1"));
    assert!(!ambiguous("-x"));
}

#[test]
fn a_failed_sweep_retries_without_handling_events() {
    let mut rec = Recorder { sweep_fails: 1, ..Recorder::default() };
    let mut stream = Script(vec!["event 'lifecycle' for domain 'lost': Defined Added\n", ""]);
    run_loop(&mut stream, &mut rec, Duration::from_millis(1), inbox(), Some(2));
    assert_eq!(rec.calls, vec!["sweep", "sweep"]);
}

#[test]
fn one_watcher_per_connection() {
    let uri = format!("test:///vph-lock-{}", std::process::id());
    let first = lock(&uri).unwrap();
    let second = lock(&uri).unwrap_err().to_string();
    assert!(second.starts_with("another 'virt-perf-hook watch' already watches test:///vph-lock-"), "{second}");
    assert!(lock(&format!("{uri}-other")).is_ok(), "another connection has its own");
    drop(first);
    assert!(lock(&uri).is_ok(), "free again once the first is gone");
}

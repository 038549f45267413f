//! `top` against a fake `$VIRSH`: `--once --json` (rates, ratios, the partial mark, sorting) and
//! the live screen under tmux (sort keys, 80x24). The real-libvirtd run is in `monitoring.rs`.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::skip;
use crate::exporter::{domstats, Fake};

/// A fake virsh whose `busy` guest burns one CPU in real time (cpu.time is the clock), with
/// IPC 2 and 5% cache misses, beside an idle guest whose counters are partial.
fn live_fake(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    let idle = domstats(&[("aaa-idle", 9_000_000_000, &[("task_clock", 1_000_000), ("instructions", 5), ("cpu_cycles", 5)])]);
    dir.write("idle", &idle);
    let d = dir.path().display();
    dir.write_exec(
        "virsh",
        &format!(
            "#!/bin/sh\nfor a; do last=$a; done\nmarker=$(printf '%s' \"$last\" | sed -n 's/.*; echo \\([^;]*\\); list.*/\\1/p')\n\
             n=$(date +%s%N)\ncat {d}/idle\n\
             printf \"Domain: 'zzz-busy'\\n  cpu.time=%s\\n  perf.task_clock=%s\\n  perf.instructions=%s\\n  perf.cpu_cycles=%s\\n  perf.cache_references=%s\\n  perf.cache_misses=%s\\n\\n\" \
             $n $n $((n * 2)) $n $((n / 100)) $((n / 2000))\n\
             echo \"$marker\"\necho '{} aaa-idle'\necho '{} zzz-busy'\n",
            Fake::uuid("aaa-idle"),
            Fake::uuid("zzz-busy")
        ),
    );
    dir
}

#[test]
fn top_once_json() {
    let dir = live_fake("top-json");
    let root = TempDir::new("top-root");
    let virsh = dir.path().join("virsh").display().to_string();
    let out = run_with(root.path(), &["top", "--once", "--json", "--interval", "0.5"], "", &[("VIRSH", &virsh)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["schema"], 1);
    let secs = v["interval_seconds"].as_f64().unwrap();
    assert!((0.5..2.0).contains(&secs), "{secs}");
    let g = v["guests"].as_array().unwrap();
    assert_eq!(g.len(), 2);
    assert_eq!(g[0]["domain"], "zzz-busy", "sorted by CPU: {v}");
    let cpu = g[0]["cpu_percent"].as_f64().unwrap();
    assert!((90.0..110.0).contains(&cpu), "{cpu}");
    assert!((g[0]["ipc"].as_f64().unwrap() - 2.0).abs() < 0.01, "{v}");
    assert!((g[0]["cache_miss_percent"].as_f64().unwrap() - 5.0).abs() < 0.1, "{v}");
    assert!((g[0]["rates"]["task_clock"].as_f64().unwrap() - 1.0).abs() < 0.1, "seconds per second: {v}");
    assert_eq!(g[0]["counters"], "complete");
    assert_eq!(g[0]["uuid"], Fake::uuid("zzz-busy"));
    assert_eq!(g[1]["counters"], "partial");
    assert_eq!(g[1]["cpu_percent"], 0.0);
    assert_eq!(g[1]["ipc"], serde_json::Value::Null, "no cycles in the interval");
    // Sorted by name, and the plain table marks the partial guest.
    let out = run_with(root.path(), &["top", "--once", "--sort", "name", "--interval", "0.3"], "", &[("VIRSH", &virsh)]);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("DOMAIN") && lines[1].starts_with("aaa-idle") && lines[2].starts_with("zzz-busy"), "{text}");
    assert!(lines[1].contains(" PART "), "{text}");
}

/// tmux with its own server socket, killed on drop.
pub struct Tmux(pub String);

impl Tmux {
    pub fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux").args(["-L", &self.0]).args(args).output().unwrap()
    }

    pub fn screen(&self) -> String {
        stdout(&self.cmd(&["capture-pane", "-p", "-t", "top"]))
    }

    /// Waits (up to 10 s) until the first data row starts with `name`; returns the screen.
    pub fn first_row(&self, name: &str) -> String {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.screen();
            let row = s.lines().skip_while(|l| !l.starts_with("DOMAIN")).nth(1).unwrap_or("");
            if row.starts_with(name) {
                return s;
            }
            assert!(Instant::now() < end, "{name} never came first:\n{s}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

#[test]
fn top_under_tmux_sorts_by_key_and_fits_80x24() {
    if !have("tmux") {
        skip!("tmux not installed (apt-get install tmux)");
    }
    let dir = live_fake("top-tmux");
    let root = TempDir::new("top-root");
    let virsh = dir.path().join("virsh").display().to_string();
    let t = Tmux(format!("vph-top-{}", std::process::id()));
    let run = format!("env VIRT_PERF_HOOK_ROOT={} VIRSH={virsh} {BIN} top --interval 0.5", root.path().display());
    let o = t.cmd(&["new-session", "-d", "-s", "top", "-x", "80", "-y", "24", &run]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = t.first_row("zzz-busy");
    assert!(s.lines().count() <= 24 && s.lines().all(|l| l.chars().count() <= 80), "{s}");
    assert!(s.starts_with("virt-perf-hook top: 2 guests"), "{s}");
    assert!(s.contains("PART: 1 with partial counters"), "{s}");
    t.cmd(&["send-keys", "-t", "top", "N"]);
    t.first_row("aaa-idle");
    t.cmd(&["send-keys", "-t", "top", "P"]);
    t.first_row("zzz-busy");
    t.cmd(&["send-keys", "-t", "top", "R"]);
    t.first_row("aaa-idle");
    t.cmd(&["send-keys", "-t", "top", "q"]);
    let end = Instant::now() + Duration::from_secs(5);
    while t.cmd(&["has-session", "-t", "top"]).status.success() {
        assert!(Instant::now() < end, "q did not quit:\n{}", t.screen());
        std::thread::sleep(Duration::from_millis(50));
    }
}

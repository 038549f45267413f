//! Version detection, the host probe, and the `check`/`events`/`refresh` commands,
//! against a fake host root.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::common::*;
use crate::skip;

pub(crate) const LIB_DIR: &str = "/usr/lib/x86_64-linux-gnu";
pub(crate) const CONFIG: &str = r#"{"enabled_perf_events": ["page_faults"]}"#;

/// A fake host: a boot id, optionally a config and a libvirt library file.
pub(crate) fn fake_host(tag: &str, config: Option<&str>, lib: Option<&str>) -> TempDir {
    let t = TempDir::new(tag);
    t.write("/proc/sys/kernel/random/boot_id", "6f1c1d1e-0000-4000-8000-000000000001\n");
    if let Some(c) = config {
        t.write("/etc/virt-perf-hook/config.json", c);
    }
    if let Some(l) = lib {
        t.write(&format!("{LIB_DIR}/{l}"), "");
    }
    t
}

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", stdout(out), stderr(out)))
}

pub(crate) fn check_json(root: &Path) -> (i32, Value) {
    let out = run_in(root, &["check", "--json"], "");
    (out.status.code().unwrap_or(-1), json(&out))
}

fn event<'a>(rows: &'a Value, name: &str) -> &'a Value {
    rows.as_array().unwrap().iter().find(|r| r["name"] == name).unwrap()
}

/// A command that writes the cache (the reports only read it): `filter` of a domain.
pub(crate) fn write_cache(root: &Path) {
    let out = run_in(root, &["filter"], DOMAIN);
    assert!(out.status.success(), "{}", stderr(&out));
}

pub(crate) fn cache_dir(root: &Path) -> std::path::PathBuf {
    root.join("var/cache/libvirt/virt-perf-hook")
}

pub(crate) fn state(root: &Path) -> Value {
    let text = std::fs::read_to_string(root.join("var/cache/libvirt/virt-perf-hook/state.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn install_hooks(t: &TempDir) {
    for sub in ["qemu.d", "daemon.d"] {
        t.write_exec(&format!("/etc/libvirt/hooks/{sub}/virt-perf-hook"), "#!/bin/sh\nexit 0\n");
    }
}

#[test]
fn version_from_library_file_is_reported_and_cached() {
    let t = fake_host("lib", Some(CONFIG), Some("libvirt.so.0.9000.0"));
    let (_, c) = check_json(t.path());
    assert_eq!(c["version"], "9.0.0");
    assert!(c["version_source"].as_str().unwrap().contains("libvirt.so.0.9000.0"), "{c}");
    assert_eq!(c["cache"]["state"], "missing");
    assert_eq!(c["add"], serde_json::json!(["page_faults"]));

    let out = run_in(t.path(), &["events", "--json"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = json(&out);
    assert_eq!(rows.as_array().unwrap().len(), 22);
    assert_eq!(event(&rows, "page_faults")["libvirt"], true);
    assert_eq!(event(&rows, "page_faults")["configured"], true);
    assert_eq!(event(&rows, "cpu_clock")["configured"], false);
    // The reports only read the cache.
    assert!(!cache_dir(t.path()).exists(), "check or events created the cache");
    assert_eq!(check_json(t.path()).1["cache"]["state"], "missing");

    write_cache(t.path());
    let s = state(t.path());
    assert_eq!(s["format"], 1);
    assert_eq!(s["version"]["version"], "9.0.0");
    assert_eq!(s["version"]["source"], "library");
    assert_eq!(check_json(t.path()).1["cache"]["state"], "fresh");
    let mode = std::fs::metadata(t.path().join("var/cache/libvirt/virt-perf-hook")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn package_upgrade_invalidates_the_cached_version() {
    let t = fake_host("upgrade", Some(CONFIG), Some("libvirt.so.0.9000.0"));
    assert_eq!(check_json(t.path()).1["version"], "9.0.0");
    write_cache(t.path());
    std::fs::remove_file(t.path().join(&LIB_DIR[1..]).join("libvirt.so.0.9000.0")).unwrap();
    t.write(&format!("{LIB_DIR}/libvirt.so.0.10000.0"), "");
    let (_, c) = check_json(t.path());
    assert_eq!(c["version"], "10.0.0");
    assert_eq!(c["cache"]["state"], "stale", "{c}");
    assert_eq!(state(t.path())["version"]["version"], "9.0.0", "check wrote the cache");
    write_cache(t.path());
    assert_eq!(state(t.path())["version"]["version"], "10.0.0");
}

#[test]
fn highest_library_version_wins() {
    let t = fake_host("highest", Some(CONFIG), Some("libvirt.so.0.9000.0"));
    for odd in ["libvirt.so.0.10010.0", "libvirt.so.0", "libvirt-qemu.so.0.11003.0", "libvirt.so.0.abc.0"] {
        t.write(&format!("{LIB_DIR}/{odd}"), "");
    }
    assert_eq!(check_json(t.path()).1["version"], "10.10.0");
}

#[test]
fn daemon_version_is_the_fallback_and_a_warm_cache_does_not_exec() {
    let t = fake_host("daemon", Some(CONFIG), None);
    let count = t.path().join("daemon-runs");
    t.write_exec("/usr/sbin/libvirtd", &format!("#!/bin/sh\necho x >> '{}'\necho 'libvirtd (libvirt) 8.0.0'\n", count.display()));
    let (_, c) = check_json(t.path());
    assert_eq!(c["version"], "8.0.0");
    assert!(c["version_source"].as_str().unwrap().ends_with("usr/sbin/libvirtd --version"), "{c}");
    // check only reads the cache: the first filter detects again and writes it.
    for _ in 0..3 {
        let out = run_in(t.path(), &["filter"], DOMAIN);
        assert!(stdout(&out).contains("<event name='page_faults' enabled='yes'/>"), "{}", stderr(&out));
    }
    let runs = std::fs::read_to_string(&count).unwrap();
    assert_eq!(runs.lines().count(), 2, "the daemon ran again despite a warm cache");
    // refresh re-detects.
    let out = run_in(t.path(), &["refresh"], "");
    assert!(stdout(&out).contains("libvirt: 8.0.0"), "{}", stdout(&out));
    assert_eq!(std::fs::read_to_string(&count).unwrap().lines().count(), 3);
}

#[test]
fn unknown_version_adds_nothing_and_warns() {
    let t = fake_host("unknown", Some(CONFIG), None);
    let out = run_in(t.path(), &["filter"], DOMAIN);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), DOMAIN);
    let err = stderr(&out);
    assert_eq!(err.matches("libvirt version unknown (no libvirt.so").count(), 1, "warned once: {err}");
    let (code, c) = check_json(t.path());
    assert_eq!(code, 1);
    assert_eq!(c["version"], Value::Null);
    let out = run_in(t.path(), &["refresh"], "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("libvirt: unknown"));
}

#[test]
fn pinned_version_is_not_cached() {
    let t = fake_host("pin", Some(r#"{"enabled_perf_events": ["page_faults"], "libvirt_version": "9.0.0"}"#), None);
    let (_, c) = check_json(t.path());
    assert_eq!(c["version_source"], "config pin");
    assert!(run_in(t.path(), &["refresh"], "").status.success());
    assert_eq!(state(t.path())["version"], Value::Null);
}
/// Whether the real kernel exposes a core PMU (what the probe's pre-check looks for).
fn real_cpu_pmu() -> bool {
    std::fs::read_dir("/sys/bus/event_source/devices")
        .map(|d| {
            d.flatten().any(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n == "cpu" || n.starts_with("cpu_") || n.starts_with("armv") || n.starts_with("cpum_")
            })
        })
        .unwrap_or(false)
}

#[test]
fn real_probe_on_this_machine() {
    if !is_root() && std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid").ok().and_then(|p| p.trim().parse::<i32>().ok()).is_none_or(|p| p > 2) {
        skip!("perf_event_open is closed to unprivileged users here (perf_event_paranoid > 2)");
    }
    let t = fake_host("realprobe", None, Some("libvirt.so.0.9000.0"));
    // The probe sees the real sysfs; the syscall is always real.
    std::os::unix::fs::symlink("/sys", t.path().join("sys")).unwrap();
    let out = run_in(t.path(), &["events", "--json"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("warn: config "), "no-config warning: {}", stderr(&out));
    let rows = json(&out);
    assert_eq!(event(&rows, "page_faults")["host"], true, "{rows}");
    assert!(rows.as_array().unwrap().iter().all(|r| r["configured"] == false));
    let cycles = event(&rows, "cpu_cycles");
    if real_cpu_pmu() {
        // With a PMU the syscall decides (a VM may still refuse): either it opens, or the reason
        // is the kernel's errno, never the missing-PMU shortcut.
        let reason = cycles["host_reason"].as_str().unwrap_or_default();
        assert!(cycles["host"] == true || (!reason.contains("no CPU PMU") && reason.starts_with('E')), "{cycles}");
    } else {
        assert_eq!(cycles["host"], false);
        assert!(cycles["host_reason"].as_str().unwrap().contains("no CPU PMU"), "{cycles}");
    }
}

#[test]
fn faked_sysfs_without_pmu_drops_hardware_events() {
    let t = fake_host("nopmu", Some(r#"{"enabled_perf_events": ["cpu_cycles", "page_faults"]}"#), Some("libvirt.so.0.9000.0"));
    install_hooks(&t);
    let out = run_in(t.path(), &["filter"], DOMAIN);
    assert!(out.status.success(), "{}", stderr(&out));
    let xml = stdout(&out);
    assert!(xml.contains("<event name='page_faults' enabled='yes'/>"), "{xml}");
    assert!(!xml.contains("cpu_cycles"), "{xml}");
    let err = stderr(&out);
    assert!(err.contains("cpu_cycles") && err.contains("no CPU PMU (/sys/bus/event_source/devices/cpu missing)"), "{err}");

    let out = run_in(t.path(), &["check"], "");
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.lines().any(|l| l.starts_with("problem") && l.contains("will drop cpu_cycles") && l.contains("no CPU PMU")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("ok") && l.contains("will add page_faults")), "{text}");
}

#[test]
fn rdt_events_need_intel_cqm() {
    let t = fake_host("cqm", Some(r#"{"enabled_perf_events": ["cmt"]}"#), Some("libvirt.so.0.9000.0"));
    let (_, c) = check_json(t.path());
    assert!(c["dropped"][0]["reason"].as_str().unwrap().contains("Intel CQM perf support was removed in Linux 4.14"), "{c}");
}

#[test]
fn check_exit_codes() {
    let t = fake_host("check", Some(CONFIG), Some("libvirt.so.0.9000.0"));
    install_hooks(&t);
    let out = run_in(t.path(), &["check"], "");
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("no libvirt daemon running"), "{text}");
    assert!(text.lines().all(|l| l.starts_with("ok") || l.starts_with("note") || l == "all well"), "{text}");
    assert_eq!(check_json(t.path()).1["ok"], true);

    // A daemon that started before the hook entries were installed may not have seen them.
    t.write("/run/libvirtd.pid", "4242\n");
    t.write("/proc/4242/stat", "4242 (libvirtd) S 1 4242 4242 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 17 0 100 0 0\n");
    t.write("/proc/stat", "cpu 0 0 0 0\nbtime 1000\n");
    let out = run_in(t.path(), &["check"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("libvirtd (pid 4242) started before the hook entries were installed or last upgraded, and no qemu hook older than it is left: if it had none at start it runs none until reloaded (after an upgrade that replaced an older copy it does run this one; check cannot tell): reload it (systemctl reload libvirtd, or kill -HUP 4242)"),
        "{}",
        stdout(&out)
    );
    // One started after them has.
    t.write("/proc/stat", "btime 4000000000\n");
    let out = run_in(t.path(), &["check"], "");
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("libvirtd (pid 4242) started after the hook entries were installed"));
    // A stale pid file is not a running daemon.
    std::fs::remove_file(t.path().join("proc/4242/stat")).unwrap();
    let out = run_in(t.path(), &["check"], "");
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));

    // A missing or non-executable hook is a problem.
    let hook = t.path().join("etc/libvirt/hooks/qemu.d/virt-perf-hook");
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(run_in(t.path(), &["check"], "").status.code(), Some(1));
    std::fs::remove_file(&hook).unwrap();
    let out = run_in(t.path(), &["check"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("qemu.d/virt-perf-hook: missing"), "{}", stdout(&out));

    // A bad config exits 3, like every config error; the rest is still reported.
    install_hooks(&t);
    t.write("/etc/virt-perf-hook/config.json", r#"{"enabled_perf_events": ["cpu_cycle"]}"#);
    let out = run_in(t.path(), &["check"], "");
    assert_eq!(out.status.code(), Some(3));
    assert!(stdout(&out).contains("did you mean 'cpu_cycles'"), "{}", stdout(&out));
    assert!(stdout(&out).contains("libvirt 9.0.0"), "{}", stdout(&out));
}

#[test]
fn events_and_refresh_work_without_a_config() {
    let t = fake_host("noconfig", None, Some("libvirt.so.0.11003.0"));
    let out = run_in(t.path(), &["events"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("configured = no"), "{}", stderr(&out));
    // The missing-config warning is a log line: -q silences it.
    let quiet = run_in(t.path(), &["-q", "events"], "");
    assert!(quiet.status.success(), "{}", stderr(&quiet));
    assert_eq!(stderr(&quiet), "");
    assert_eq!(stdout(&quiet), stdout(&out));
    let text = stdout(&out);
    assert!(text.starts_with("libvirt 11.3.0"), "{text}");
    assert_eq!(text.lines().filter(|l| l.contains(" yes ") || l.contains(" no ")).count(), 22, "{text}");
    let out = run_in(t.path(), &["refresh"], "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("libvirt: 11.3.0"), "{}", stdout(&out));
    assert_eq!(state(t.path())["version"]["version"], "11.3.0");
    let cache_line = |out: &std::process::Output| stdout(out).lines().find(|l| l.starts_with("cache: ")).unwrap_or_default().to_string();
    let state_file = t.path().join("var/cache/libvirt/virt-perf-hook/state.json");
    // `events` only read the cache: refresh found none.
    assert_eq!(cache_line(&out), format!("cache: {} rebuilt (was missing)", state_file.display()));
    let out = run_in(t.path(), &["refresh"], "");
    assert_eq!(cache_line(&out), format!("cache: {} rebuilt (refresh requested)", state_file.display()));
    std::fs::remove_file(&state_file).unwrap();
    let out = run_in(t.path(), &["refresh"], "");
    assert_eq!(cache_line(&out), format!("cache: {} rebuilt (was missing)", state_file.display()));
}

#[test]
fn another_boot_reprobes() {
    let t = fake_host("boot", Some(CONFIG), Some("libvirt.so.0.9000.0"));
    run_in(t.path(), &["refresh"], "");
    let before = state(t.path());
    assert_eq!(before["probe"]["boot_id"], "6f1c1d1e-0000-4000-8000-000000000001");
    t.write("/proc/sys/kernel/random/boot_id", "6f1c1d1e-0000-4000-8000-000000000002\n");
    let (_, c) = check_json(t.path());
    assert_eq!(c["cache"]["state"], "stale");
    assert!(c["cache"]["detail"].as_str().unwrap().contains("rebooted"), "{c}");
    assert_eq!(state(t.path()), before, "check wrote the cache");
    write_cache(t.path());
    assert_eq!(state(t.path())["probe"]["boot_id"], "6f1c1d1e-0000-4000-8000-000000000002");
}

/// In hook mode a hung `libvirtd --version` (the last resort when no library file is found) is
/// given a second, not five.
#[test]
fn hung_daemon_version_is_bounded_in_the_hook() {
    let t = fake_host("hungdaemon", Some(CONFIG), None);
    t.write_exec("/usr/sbin/libvirtd", "#!/bin/sh\nexec sleep 30\n");
    let r = run_limited(t.path(), &["qemu", "vm", "restore", "begin", "-"], &[], Input::Bytes(DOMAIN.as_bytes().to_vec()), std::time::Duration::from_secs(30));
    assert_eq!(r.out.status.code(), Some(0), "{}", stderr(&r.out));
    assert!(r.elapsed < std::time::Duration::from_secs(3), "the hook waited {:?} for libvirtd --version", r.elapsed);
    assert!(stderr(&r.out).contains("did not finish within 1s"), "{}", stderr(&r.out));
}

/// A daemon that had a qemu hook when it started lists qemu.d on every call (libvirtd 9.0.0 ran
/// an entry added later on the next guest start): our newer entry is fine then, no reload.
#[test]
fn check_daemon_with_an_older_qemu_hook_needs_no_reload() {
    let t = fake_host("olderhook", Some(CONFIG), Some("libvirt.so.0.9000.0"));
    let other = t.write_exec("/etc/libvirt/hooks/qemu", "#!/bin/sh\nexit 0\n");
    let m = std::fs::symlink_metadata(&other).unwrap();
    let born = m.created().unwrap_or_else(|_| m.modified().unwrap()).duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    // The daemon started just after the other hook appeared (start = btime + ticks / CLK_TCK).
    let btime = born.floor() as u64;
    let ticks = ((born - born.floor()) * 100.0).ceil() as u64 + 1;
    t.write("/run/libvirtd.pid", "4242\n");
    t.write("/proc/4242/stat", &format!("4242 (libvirtd) S 1 4242 4242 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 17 0 {ticks} 0 0\n"));
    t.write("/proc/stat", &format!("btime {btime}\n"));
    std::thread::sleep(std::time::Duration::from_millis(100));
    install_hooks(&t);
    // Our entries were installed (or last upgraded) well after the daemon started.
    for sub in ["qemu.d", "daemon.d"] {
        let p = t.path().join(format!("etc/libvirt/hooks/{sub}/virt-perf-hook"));
        assert!(Command::new("touch").arg("-m").arg("-d").arg(format!("@{}", btime + 100)).arg(&p).status().unwrap().success());
    }
    let out = run_in(t.path(), &["check"], "");
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains(&format!("but {} was there already", other.display())), "{text}");
    // Without it (removed since, or never there), check cannot know: it asks for a reload.
    std::fs::remove_file(&other).unwrap();
    let out = run_in(t.path(), &["check"], "");
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("reload it (systemctl reload libvirtd, or kill -HUP 4242)"), "{}", stdout(&out));
}

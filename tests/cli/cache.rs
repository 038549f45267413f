//! The cache: concurrent writers, corrupt, unwritable, forged and locked caches, and the reports
//! that must never create it, against a fake host root.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::common::*;
use crate::host::{cache_dir, check_json, fake_host, state, write_cache, CONFIG, LIB_DIR};
use crate::skip;

#[test]
fn concurrent_refreshes_leave_one_valid_file() {
    let t = fake_host("race", Some(CONFIG), Some("libvirt.so.0.9000.0"));
    let children: Vec<_> = (0..32)
        .map(|_| {
            Command::new(BIN)
                .arg("refresh")
                .env_clear()
                .env("VIRT_PERF_HOOK_ROOT", t.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    }
    let s = state(t.path());
    assert_eq!(s["version"]["version"], "9.0.0");
    assert_eq!(s["probe"]["results"].as_object().unwrap().len(), 22);
    let names: Vec<String> = std::fs::read_dir(t.path().join("var/cache/libvirt/virt-perf-hook"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| n == "state.json" || n == "lock"), "temp files left: {names:?}");
}

#[test]
fn corrupt_or_symlinked_cache_is_replaced() {
    let t = fake_host("corrupt", Some(CONFIG), Some("libvirt.so.0.9000.0"));
    t.write("/var/cache/libvirt/virt-perf-hook/state.json", "{\"format\": 1, \"vers");
    let (_, c) = check_json(t.path());
    assert_eq!(c["cache"]["state"], "ignored", "{c}");
    write_cache(t.path());
    assert_eq!(state(t.path())["version"]["version"], "9.0.0");

    let target = t.write("/precious", "keep me");
    let f = t.path().join("var/cache/libvirt/virt-perf-hook/state.json");
    std::fs::remove_file(&f).unwrap();
    std::os::unix::fs::symlink(&target, &f).unwrap();
    let (_, c) = check_json(t.path());
    assert!(c["cache"]["detail"].as_str().unwrap().contains("symlink"), "{c}");
    write_cache(t.path());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
    assert_eq!(state(t.path())["format"], 1);
}

#[test]
fn unwritable_cache_still_works() {
    let t = fake_host("unwritable", Some(CONFIG), Some("libvirt.so.0.9000.0"));
    // A file where the cache directory belongs: unwritable even for root.
    t.write("/var/cache/libvirt/virt-perf-hook", "");
    let out = run_in(t.path(), &["filter"], DOMAIN);
    assert!(stdout(&out).contains("<event name='page_faults' enabled='yes'/>"), "{}", stderr(&out));
    assert_eq!(stderr(&out).matches("not caching host state").count(), 1, "{}", stderr(&out));
    if is_root() {
        assert!(!stderr(&out).contains("run as root"), "root is told to run as root: {}", stderr(&out));
    }
    // check only reads: it finds no usable directory and says so.
    let (_, c) = check_json(t.path());
    assert_eq!(c["cache"]["state"], "ignored", "{c}");
    assert!(c["cache"]["detail"].as_str().unwrap().contains("not a directory"), "{c}");
}

/// A cache others can write is not believed: a forged "cpu_cycles opens" would make the root
/// hook add an event the host cannot open, and the guest would fail to start.
#[test]
fn untrusted_cache_is_ignored_and_not_written() {
    for (what, mode_of) in [("dir 0777", "var/cache/libvirt/virt-perf-hook"), ("state.json 0666", "var/cache/libvirt/virt-perf-hook/state.json")] {
        let t = fake_host("untrusted", Some(r#"{"enabled_perf_events": ["cpu_cycles", "page_faults"]}"#), Some("libvirt.so.0.9000.0"));
        assert!(run_in(t.path(), &["refresh"], "").status.success());
        let f = t.path().join("var/cache/libvirt/virt-perf-hook/state.json");
        let mut s = state(t.path());
        s["probe"]["results"]["cpu_cycles"] = Value::Null;
        std::fs::write(&f, serde_json::to_string(&s).unwrap()).unwrap();
        let mode = if mode_of.ends_with(".json") { 0o666 } else { 0o777 };
        std::fs::set_permissions(t.path().join(mode_of), std::fs::Permissions::from_mode(mode)).unwrap();

        let out = run_in(t.path(), &["filter"], DOMAIN);
        assert!(out.status.success(), "{what}: {}", stderr(&out));
        assert!(!stdout(&out).contains("cpu_cycles"), "{what}: the forged probe was believed");
        let err = stderr(&out);
        assert_eq!(err.matches("writable by group or others").count(), 1, "{what}: one warning: {err}");
        assert!(err.contains(&t.path().join(mode_of).display().to_string()), "{what}: names the path: {err}");

        let out = run_in(t.path(), &["check"], "");
        assert_eq!(out.status.code(), Some(1), "{what}");
        // The fix removes what others could have written; chmod/chown would adopt a forgery.
        let fix = if mode == 0o777 { "rm -rf " } else { "rm -f " };
        let line = stdout(&out).lines().find(|l| l.starts_with("problem") && l.contains("untrusted")).map(str::to_string);
        let line = line.unwrap_or_else(|| panic!("{what}: {}", stdout(&out)));
        assert!(line.contains(fix) && line.contains("&& virt-perf-hook refresh"), "{what}: {line}");
        assert!(!line.contains("chmod") && !line.contains("chown"), "{what}: {line}");
        assert_eq!(state(t.path()), s, "{what}: the untrusted cache was written");
    }
}

/// The issue's case: a group member replaced state.json in a group-writable cache directory.
/// `check` must not advise adopting it (chmod the dir, chown the file), and `refresh` (root)
/// must throw it away and rebuild in a directory only root can write.
#[test]
fn refresh_rebuilds_an_untrusted_cache() {
    if !is_root() {
        skip!("needs root to chown the forged files to another user");
    }
    let cfg = r#"{"enabled_perf_events": ["cpu_cycles", "page_faults"]}"#;
    let chown = |p: &Path, uid: u32| nix::unistd::chown(p, Some(nix::unistd::Uid::from_raw(uid)), None).unwrap();
    let forge = |t: &TempDir| {
        assert!(run_in(t.path(), &["refresh"], "").status.success());
        let mut s = state(t.path());
        s["probe"]["results"]["cpu_cycles"] = Value::Null;
        let f = t.path().join("var/cache/libvirt/virt-perf-hook/state.json");
        std::fs::remove_file(&f).unwrap();
        std::fs::write(&f, serde_json::to_string(&s).unwrap()).unwrap();
        f
    };
    let rebuilt = |t: &TempDir, what: &str| {
        let out = run_in(t.path(), &["refresh"], "");
        assert_eq!(out.status.code(), Some(0), "{what}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(text.lines().any(|l| l.starts_with("cache: ") && l.contains("removed")), "{what}: says what it did: {text}");
        let dir = t.path().join("var/cache/libvirt/virt-perf-hook");
        let m = std::fs::symlink_metadata(&dir).unwrap();
        assert!(m.is_dir(), "{what}");
        assert_eq!((m.permissions().mode() & 0o777, std::os::unix::fs::MetadataExt::uid(&m)), (0o700, 0), "{what}");
        assert_ne!(state(t.path())["probe"]["results"]["cpu_cycles"], Value::Null, "{what}: the forged probe survived");
        let (code, c) = check_json(t.path());
        assert_ne!(c["cache"]["state"], "untrusted", "{what}: {c}");
        assert!(c["dropped"].to_string().contains("cpu_cycles"), "{what}: {c}");
        assert_ne!(code, 3, "{what}");
    };

    // Group-writable directory, forged file owned by the group member.
    let t = fake_host("forged", Some(cfg), Some("libvirt.so.0.9000.0"));
    let f = forge(&t);
    chown(&f, 1000);
    let dir = t.path().join("var/cache/libvirt/virt-perf-hook");
    set_mode(&dir, 0o770);
    let out = run_in(t.path(), &["check"], "");
    let text = stdout(&out);
    assert!(!text.contains("chmod") && !text.contains("chown"), "advice that adopts the forgery: {text}");
    assert!(text.contains(&format!("rm -rf {} && virt-perf-hook refresh", dir.display())), "{text}");
    rebuilt(&t, "group-writable dir");

    // A directory owned by someone else, and a symlinked one (its target is left alone).
    let t = fake_host("forged-owner", Some(cfg), Some("libvirt.so.0.9000.0"));
    forge(&t);
    chown(&t.path().join("var/cache/libvirt/virt-perf-hook"), 1000);
    rebuilt(&t, "dir owned by uid 1000");
    let t = fake_host("forged-link", Some(cfg), Some("libvirt.so.0.9000.0"));
    forge(&t);
    let elsewhere = t.path().join("elsewhere");
    std::fs::rename(t.path().join("var/cache/libvirt/virt-perf-hook"), &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, t.path().join("var/cache/libvirt/virt-perf-hook")).unwrap();
    rebuilt(&t, "symlinked dir");
    assert!(elsewhere.join("state.json").exists(), "the symlink's target was touched");

    // A trusted directory with an untrusted state file or lock file: the file goes.
    for (name, owner, mode) in [("state.json", 1000, 0o644), ("state.json", 0, 0o666), ("lock", 0, 0o666)] {
        let t = fake_host("forged-file", Some(cfg), Some("libvirt.so.0.9000.0"));
        let f = forge(&t).with_file_name(name);
        let text = if name == "lock" { String::new() } else { std::fs::read_to_string(&f).unwrap() };
        std::fs::write(&f, text).unwrap();
        chown(&f, owner);
        set_mode(&f, mode);
        rebuilt(&t, &format!("{name} uid {owner} mode {mode:o}"));
    }
}

/// The cache label says what happened: a cache without a version is not "fresh" when the
/// version had to be detected (and written) this time.
#[test]
fn cache_without_a_version_is_reported_stale() {
    let t = fake_host("noversion", Some(CONFIG), None);
    let (_, c) = check_json(t.path());
    assert_eq!(c["version"], Value::Null);
    // Only a probe, with the version unknown: `filter` writes that much.
    write_cache(t.path());
    assert_eq!(state(t.path())["version"], Value::Null, "only the probe is cached");
    t.write(&format!("{LIB_DIR}/libvirt.so.0.9000.0"), "");
    let (_, c) = check_json(t.path());
    assert_eq!(c["version"], "9.0.0");
    assert_eq!(c["cache"]["state"], "stale", "{c}");
    let detail = c["cache"]["detail"].as_str().unwrap();
    assert!(detail.starts_with("no version cached; not written: this command only reads"), "{c}");
    write_cache(t.path());
    assert_eq!(check_json(t.path()).1["cache"]["state"], "fresh");
}

/// The reports (`status`, `events`, `check`, `filter --dry-run`) never create or write the cache:
/// a missing or stale one is computed in memory (issue 20: a test's `status` on the real host
/// left /var/cache/libvirt/virt-perf-hook behind).
#[test]
fn reports_leave_no_cache_behind() {
    let t = fake_host("readonly", Some(CONFIG), Some("libvirt.so.0.9000.0"));
    let input = t.write("/in.xml", DOMAIN);
    let mut runs: Vec<Vec<&str>> = vec![
        vec!["check"],
        vec!["check", "--json"],
        vec!["events"],
        vec!["events", "--json"],
        vec!["filter", "--dry-run", input.to_str().unwrap()],
    ];
    if have("virsh") {
        runs.push(vec!["status", "--connect", "test:///default", "--all"]);
        runs.push(vec!["status", "--json", "--connect", "test:///default", "--all"]);
    } else {
        skipping(&format!("{}: status part", module_path!()), "virsh not installed (apt-get install libvirt-clients)");
    }
    for args in &runs {
        let out = run_in(t.path(), args, "");
        assert!(out.status.code().is_some_and(|c| c <= 1), "{args:?}: {}", stderr(&out));
        assert!(!t.path().join("var").exists(), "{args:?} created {}", cache_dir(t.path()).display());
    }
    // A stale cache is left as it was, byte for byte.
    write_cache(t.path());
    let before = std::fs::read(cache_dir(t.path()).join("state.json")).unwrap();
    t.write("/proc/sys/kernel/random/boot_id", "6f1c1d1e-0000-4000-8000-000000000009\n");
    for args in &runs {
        run_in(t.path(), args, "");
        assert_eq!(std::fs::read(cache_dir(t.path()).join("state.json")).unwrap(), before, "{args:?} wrote the cache");
    }
}

/// The daemon hook refreshes the cache whatever the config holds: only a pin would matter.
#[test]
fn daemon_hook_refreshes_without_a_valid_config() {
    let t = fake_host("daemonrefresh", Some("{\"enabled_perf_events\": [\"nope\"]}"), Some("libvirt.so.0.9000.0"));
    let out = run_in(t.path(), &["daemon", "-", "start", "-", "start"], "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("refreshing the cache anyway"), "{}", stderr(&out));
    assert_eq!(state(t.path())["version"]["version"], "9.0.0");
    assert_eq!(state(t.path())["probe"]["results"].as_object().unwrap().len(), 22);
}

/// Holds an exclusive flock on the fake host's cache `lock` until dropped, like
/// `flock -x lock -c 'sleep 900'` would.
fn hold_cache_lock(t: &TempDir) -> nix::fcntl::Flock<std::fs::File> {
    let dir = t.path().join("var/cache/libvirt/virt-perf-hook");
    std::fs::create_dir_all(&dir).unwrap();
    set_mode(&dir, 0o700);
    let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(dir.join("lock")).unwrap();
    set_mode(&dir.join("lock"), 0o600);
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|(_, e)| e).unwrap()
}

/// Another process holding the cache lock must not stall the hook (libvirt waits for it with
/// the guest's restore on hold): it gives up on the cache within well under a second.
#[test]
fn held_cache_lock_does_not_stall_the_hook_or_refresh() {
    let t = fake_host("heldlock", Some(CONFIG), Some("libvirt.so.0.9000.0"));
    let _held = hold_cache_lock(&t);
    let limit = std::time::Duration::from_secs(20);
    let hook = ["qemu", "vm", "restore", "begin", "-"];
    let r = run_limited(t.path(), &hook, &[], Input::Bytes(DOMAIN.as_bytes().to_vec()), limit);
    assert_eq!(r.out.status.code(), Some(0), "{}", stderr(&r.out));
    assert!(stdout(&r.out).contains("<event name='page_faults' enabled='yes'/>"), "the rewritten XML: {}", stderr(&r.out));
    assert!(r.elapsed < std::time::Duration::from_secs(2), "the hook waited {:?} for the lock", r.elapsed);
    let err = stderr(&r.out);
    assert_eq!(err.matches("is held by another process").count(), 1, "logged once: {err}");

    // refresh waits a few seconds at most, and says why the cache was not written.
    let r = run_limited(t.path(), &["refresh"], &[], Input::Bytes(Vec::new()), limit);
    assert_eq!(r.out.status.code(), Some(0), "{}", stderr(&r.out));
    assert!(r.elapsed < std::time::Duration::from_secs(8), "refresh waited {:?}", r.elapsed);
    let out = stdout(&r.out);
    assert!(out.contains("cache:") && out.contains("busy") && out.contains("is held by another process"), "{out}");
    assert!(!t.path().join("var/cache/libvirt/virt-perf-hook/state.json").exists());
}

/// The lock file is held to the state file's standard: a lock others can write (or a FIFO, or a
/// symlink) is not used, and nothing is written.
#[test]
fn untrusted_lock_file_is_not_used() {
    let t = fake_host("badlock", Some(CONFIG), Some("libvirt.so.0.9000.0"));
    let dir = t.path().join("var/cache/libvirt/virt-perf-hook");
    std::fs::create_dir_all(&dir).unwrap();
    set_mode(&dir, 0o700);
    let lock = dir.join("lock");
    for (what, make) in [
        ("writable lock", Box::new(|p: &Path| {
            std::fs::write(p, "").unwrap();
            set_mode(p, 0o666);
        }) as Box<dyn Fn(&Path)>),
        ("fifo lock", Box::new(|p: &Path| {
            nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        })),
    ] {
        let _ = std::fs::remove_file(&lock);
        make(&lock);
        let r = run_limited(t.path(), &["qemu", "vm", "restore", "begin", "-"], &[], Input::Bytes(DOMAIN.as_bytes().to_vec()), std::time::Duration::from_secs(20));
        assert_eq!(r.out.status.code(), Some(0), "{what}: {}", stderr(&r.out));
        assert!(stdout(&r.out).contains("page_faults"), "{what}: {}", stderr(&r.out));
        let err = stderr(&r.out);
        assert!(err.contains(&lock.display().to_string()) && (err.contains("writable by group or others") || err.contains("not a regular file")), "{what}: {err}");
        assert!(!dir.join("state.json").exists(), "{what}: written despite the lock file");
    }
}

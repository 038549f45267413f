//! The Ansible role (deploy/ansible/) on this machine as the managed host: the example playbook
//! installs the built .deb and writes the config; a second run changes nothing; a misspelt event
//! is stopped by the tool's validation with its one-line error and the old config stays, also in
//! a check-mode run. Root, dpkg and ansible-playbook (`.ci/run` installs ansible-core in
//! target/ansible) are needed, and `VPH_SYSTEM_TESTS=1`: it installs and purges the package.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;
use crate::skip;

const CONFIG: &str = "/etc/virt-perf-hook/config.json";
/// Where the role keeps the package file on the host (its default).
const PACKAGE_DIR: &str = "/var/cache/virt-perf-hook-packages";
const HOOK_DIRS: [&str; 2] = ["/etc/libvirt/hooks/qemu.d", "/etc/libvirt/hooks/daemon.d"];
/// One playbook run: a fresh install takes about 10 s here.
const RUN_LIMIT: Duration = Duration::from_secs(100);

fn top() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// ansible-playbook from the venv `.ci/run` makes, else from PATH.
fn ansible_playbook() -> Option<PathBuf> {
    let venv = top().join("target/ansible/bin/ansible-playbook");
    if venv.is_file() {
        return Some(venv);
    }
    have("ansible-playbook").then(|| PathBuf::from("ansible-playbook"))
}

fn installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${db:Status-Status}", "virt-perf-hook"])
        .output()
        .is_ok_and(|o| o.status.success() && stdout(&o).trim() != "not-installed")
}

/// Undoes what the playbook did to the host (also when an assertion fails): purges the package,
/// removes the role's package copy, and puts the config, hook tree and caches back exactly as
/// found (dpkg removes the hook directories when empty; purge removes the cache).
struct Host {
    snapshot: HostSnapshot,
}

impl Drop for Host {
    fn drop(&mut self) {
        if installed() {
            let out = Command::new("dpkg").args(["-P", "virt-perf-hook"]).output();
            if !out.as_ref().is_ok_and(|o| o.status.success()) {
                eprintln!("ansible test cleanup: dpkg -P virt-perf-hook failed: {out:?}");
            }
        }
        let _ = std::fs::remove_dir_all(PACKAGE_DIR);
        self.snapshot.restore();
    }
}

struct Play {
    program: PathBuf,
    work: TempDir,
}

struct Outcome {
    ok: bool,
    /// What ansible-playbook printed (stdout, then stderr).
    text: String,
    /// localhost's PLAY RECAP counters: `ok=11 changed=0 unreachable=0 failed=0 ...`.
    recap: String,
}

impl Outcome {
    /// One PLAY RECAP counter, e.g. `changed`.
    fn count(&self, key: &str) -> Option<u64> {
        self.recap.split_whitespace().find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
    }
}

impl Play {
    /// Runs deploy/ansible/site.yml on localhost (`ansible_connection=local`) with `vars` as
    /// extra vars, in a clean environment whose Ansible state lives in the test's directory.
    fn run(&self, vars: &serde_json::Value, extra: &[&str]) -> Outcome {
        let w = self.work.path();
        let vars_file = w.join("vars.json");
        std::fs::write(&vars_file, vars.to_string()).unwrap();
        let mut cmd = Command::new(&self.program);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", w)
            .env("LC_ALL", "C.UTF-8")
            .env("ANSIBLE_CONFIG", w.join("ansible.cfg"))
            .env("ANSIBLE_HOME", w.join("ansible-home"))
            .env("ANSIBLE_LOCAL_TEMP", w.join("local-tmp"))
            .env("ANSIBLE_REMOTE_TEMP", w.join("remote-tmp"))
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_STDOUT_CALLBACK", "default")
            .current_dir(w)
            .arg("-i")
            .arg(w.join("inventory.ini"))
            .arg(top().join("deploy/ansible/site.yml"))
            .arg("-e")
            .arg(format!("@{}", vars_file.display()))
            .args(extra)
            .stdin(Stdio::null());
        let run = feed_limited(cmd, Input::Bytes(Vec::new()), RUN_LIMIT);
        let text = format!("{}{}", stdout(&run.out), stderr(&run.out));
        eprintln!("ansible-playbook {extra:?} took {:.1} s, {}", run.elapsed.as_secs_f64(), run.out.status);
        let recap = text
            .split("PLAY RECAP")
            .nth(1)
            .and_then(|r| r.lines().find(|l| l.starts_with("localhost")))
            .unwrap_or("")
            .split_whitespace()
            .skip(2)
            .collect::<Vec<_>>()
            .join(" ");
        Outcome { ok: run.out.status.success(), text, recap }
    }
}

fn check_json() -> serde_json::Value {
    let out = Command::new("/usr/bin/virt-perf-hook")
        .args(["-c", CONFIG, "check", "--json"])
        .env_remove("VIRT_PERF_HOOK_CONFIG")
        .env_remove("VIRT_PERF_HOOK_ROOT")
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("check --json: {e}: {}", stdout(&out)))
}

#[test]
fn role_installs_validates_and_is_idempotent() {
    crate::require_system_tests!("installs and purges the package on this host");
    if !is_root() {
        skip!("needs root (the playbook installs the package)");
    }
    for tool in ["dpkg", "dpkg-deb"] {
        if !have(tool) {
            skip!("{tool} not found (not a Debian-based system)");
        }
    }
    // The managed side: apt's module needs python3-apt for this interpreter.
    if !Path::new("/usr/bin/python3").exists() {
        skip!("/usr/bin/python3 not found (apt-get install python3-apt)");
    }
    let Some(program) = ansible_playbook() else {
        skip!("ansible-playbook not found (.ci/run installs ansible-core into target/ansible)");
    };
    let Some(deb) = crate::package::built_packages().iter().find(|p| p.extension().is_some_and(|e| e == "deb")).cloned()
    else {
        skip!("packaging/build.sh built no .deb (see its error above)");
    };

    let _locks = host_locks();
    if installed() {
        skip!("virt-perf-hook is already installed here; not touching it");
    }
    let entries = HOOK_DIRS.iter().map(|d| format!("{d}/virt-perf-hook"));
    let paths = ["/usr/bin/virt-perf-hook", "/etc/virt-perf-hook", PACKAGE_DIR].map(String::from);
    for f in paths.into_iter().chain(entries) {
        if Path::new(&f).symlink_metadata().is_ok() {
            skip!("{f} exists (a manual install or another test); not touching it");
        }
    }
    let _host = Host { snapshot: HostSnapshot::take() };

    let play = Play { program, work: TempDir::new("ansible") };
    // Already root, and this machine has no sudo: no become.
    play.work.write(
        "inventory.ini",
        "[canary]\nlocalhost ansible_connection=local ansible_python_interpreter=/usr/bin/python3 ansible_become=false\n\n\
         [hypervisors]\nlocalhost\n",
    );
    play.work.write("ansible.cfg", "[defaults]\n");
    let vars = |events: &[&str]| {
        serde_json::json!({
            "virt_perf_hook_package_file": deb,
            "virt_perf_hook_events": events,
            "virt_perf_hook_domains_include": ["instance-*"],
            "virt_perf_hook_domains_exclude": ["*-test"],
        })
    };

    // 1. Fresh install: the package, the config from the role's variables, a clean check.
    let first = play.run(&vars(&["page_faults", "cpu_clock"]), &[]);
    assert!(first.ok, "first run failed:\n{}", first.text);
    assert!(installed(), "the package is not installed after the first run:\n{}", first.text);
    let meta = std::fs::metadata(CONFIG).unwrap();
    assert_eq!((meta.mode() & 0o7777, meta.uid(), meta.gid()), (0o644, 0, 0), "{CONFIG} mode/owner");
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(CONFIG).unwrap()).unwrap();
    assert_eq!(
        config,
        serde_json::json!({
            "enabled_perf_events": ["page_faults", "cpu_clock"],
            "host_probe": true,
            "existing": "respect",
            "on_error": "pass",
            "domains": {"include": ["instance-*"], "exclude": ["*-test"]},
        }),
        "the config the role wrote"
    );
    let check = check_json();
    let config_item = check["items"].as_array().unwrap().iter().find(|i| i["what"] == "config").unwrap();
    assert_eq!(config_item["status"], "ok", "check's config item: {check}");
    assert_ne!(check["exit"], 3, "{check}");
    assert_eq!(check["add"], serde_json::json!(["cpu_clock", "page_faults"]), "{check}");
    // The per-host summary line; `status` may be missing or libvirt unreachable: reported, not fatal.
    assert!(
        first.text.contains("\"msg\": \"virt-perf-hook: libvirt ")
            && first.text.contains("events added: cpu_clock, page_faults"),
        "no summary line:\n{}",
        first.text
    );
    assert!(first.text.contains("; guests: "), "no guests in the summary:\n{}", first.text);
    let good = std::fs::read(CONFIG).unwrap();

    // 2. The same run again changes nothing.
    let second = play.run(&vars(&["page_faults", "cpu_clock"]), &[]);
    assert!(second.ok, "second run failed:\n{}", second.text);
    let recap = (second.count("changed"), second.count("failed"));
    assert_eq!(recap, (Some(0), Some(0)), "second run: {}\n{}", second.recap, second.text);

    // 3. A misspelt event: the tool rejects the new file before it is put in place.
    let typo = "unknown event 'cpu_cycle'; did you mean 'cpu_cycles'?";
    let bad = play.run(&vars(&["page_faults", "cpu_cycle"]), &[]);
    assert!(!bad.ok, "a misspelt event passed:\n{}", bad.text);
    assert!(bad.text.contains("failed to validate") && bad.text.contains(typo), "no validation error:\n{}", bad.text);
    assert_eq!(bad.count("failed"), Some(1), "{}", bad.recap);
    assert!(std::fs::read(CONFIG).unwrap() == good, "the config changed after a rejected run");

    // 4. A check-mode run (the canary dry run) validates the new config too, and writes nothing.
    let dry = play.run(&vars(&["page_faults", "cpu_cycle"]), &["--check", "--diff"]);
    assert!(!dry.ok && dry.text.contains(typo), "check mode did not validate:\n{}", dry.text);
    assert!(std::fs::read(CONFIG).unwrap() == good, "the config changed in check mode");
}

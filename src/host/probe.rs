//! Which perf events this host can open, tested the way libvirt opens them (src/util/virperf.c):
//! `perf_event_open` with `disabled=1, inherit=1` and the event's type/config, here on our own
//! process, closed at once. An event libvirt cannot open makes the guest fail to start, so an
//! event is only added when this succeeds.

use std::collections::BTreeMap;
use std::os::fd::{FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::libc;

use crate::core::events::{Event, Kind, CATALOG};
use crate::support::paths::Paths;

/// Per event name: `None` when it opens, else the reason it does not.
pub type Results = BTreeMap<String, Option<String>>;

pub const NO_CQM: &str = "no /sys/devices/intel_cqm (Intel CQM perf support was removed in Linux 4.14)";
pub const NO_PMU: &str = "no CPU PMU (/sys/bus/event_source/devices/cpu missing)";

/// The first fields of `struct perf_event_attr` (PERF_ATTR_SIZE_VER0, 64 bytes): every kernel
/// with perf accepts this size, and the fields after it stay zero, as libvirt leaves them.
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    /// The kernel's bitfield word: bit 0 `disabled`, bit 1 `inherit`, bit 5 `exclude_kernel`,
    /// bit 6 `exclude_hv`.
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

const PERF_ATTR_SIZE_VER0: u32 = 64;
const FLAG_DISABLED: u64 = 1 << 0;
const FLAG_INHERIT: u64 = 1 << 1;
const FLAG_EXCLUDE_KERNEL: u64 = 1 << 5;
const FLAG_EXCLUDE_HV: u64 = 1 << 6;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;

/// Probes all 22 events.
pub fn probe_all(paths: &Paths) -> Results {
    let host = Host::read(paths);
    CATALOG.iter().map(|ev| (ev.name.to_string(), host.probe(ev).err())).collect()
}

/// What decides an event before the syscall: the RDT perf type and whether a CPU PMU exists.
struct Host {
    cqm_type: Result<u32, String>,
    pmu: bool,
}

impl Host {
    fn read(paths: &Paths) -> Host {
        let cqm = paths.intel_cqm_type();
        let cqm_type = match std::fs::read_to_string(&cqm) {
            Ok(s) => s.trim().parse().map_err(|_| format!("{} holds {:?}, not a perf type number", cqm.display(), s.trim())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(NO_CQM.to_string()),
            Err(e) => Err(format!("cannot read {}: {e}", cqm.display())),
        };
        Host { cqm_type, pmu: has_cpu_pmu(paths) }
    }

    fn probe(&self, ev: &Event) -> Result<(), String> {
        let type_ = match ev.kind {
            Kind::Rdt => self.cqm_type.clone()?,
            // Checked before the syscall on every root: it is cheap, it lets a faked sysfs
            // decide in tests, and a missing PMU is the common case in VMs.
            Kind::Hardware if !self.pmu => return Err(NO_PMU.to_string()),
            _ => ev.perf_type().unwrap_or_default(),
        };
        open_event(type_, ev.config)
    }
}

/// Whether the kernel exposes a core PMU. It is `cpu` on x86 and POWER; hybrid Intel has
/// `cpu_core`/`cpu_atom`, arm64 `armv8_*`, s390x `cpum_cf`. A name missing from this list only
/// drops hardware events, which is the safe direction.
fn has_cpu_pmu(paths: &Paths) -> bool {
    let cpu = paths.cpu_pmu();
    if cpu.exists() {
        return true;
    }
    let Some(dir) = cpu.parent().and_then(|d| std::fs::read_dir(d).ok()) else { return false };
    dir.flatten().any(|e| {
        let n = e.file_name();
        let n = n.to_string_lossy();
        n.starts_with("cpu_") || n.starts_with("armv") || n.starts_with("cpum_")
    })
}

/// Opens and closes one counter on this process, as libvirt does on the QEMU process.
fn open_event(type_: u32, config: u64) -> Result<(), String> {
    let first = syscall_open(type_, config, FLAG_DISABLED | FLAG_INHERIT);
    let result = match first {
        // Unprivileged callers (`check` as a user) may not count kernel time under
        // perf_event_paranoid >= 2; libvirt runs as root, so ask only whether the event exists.
        Err(Errno::EACCES | Errno::EPERM) if !nix::unistd::geteuid().is_root() => {
            syscall_open(type_, config, FLAG_DISABLED | FLAG_INHERIT | FLAG_EXCLUDE_KERNEL | FLAG_EXCLUDE_HV)
        }
        other => other,
    };
    result.map(drop).map_err(|e| format!("{e:?}: {}", e.desc()))
}

fn syscall_open(type_: u32, config: u64, flags: u64) -> Result<OwnedFd, Errno> {
    let attr = PerfEventAttr { type_, size: PERF_ATTR_SIZE_VER0, config, flags, ..Default::default() };
    let (pid, cpu, group): (libc::pid_t, libc::c_int, libc::c_int) = (0, -1, -1);
    // SAFETY: `attr` is a valid, fully initialised perf_event_attr prefix whose `size` says how
    // much the kernel may read; the other arguments are plain integers.
    let fd = unsafe {
        libc::syscall(libc::SYS_perf_event_open, &attr as *const PerfEventAttr, pid, cpu, group, PERF_FLAG_FD_CLOEXEC)
    };
    if fd < 0 {
        return Err(Errno::last());
    }
    let fd = libc::c_int::try_from(fd).map_err(|_| Errno::EBADF)?;
    // SAFETY: the kernel just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_is_ver0_sized() {
        assert_eq!(std::mem::size_of::<PerfEventAttr>(), PERF_ATTR_SIZE_VER0 as usize);
    }

    #[test]
    fn faked_sysfs_decides_hardware_and_rdt() {
        let paths = crate::support::paths::FakeRoot::new("probe-nopmu");
        let r = probe_all(&paths);
        assert_eq!(r.len(), 22);
        assert_eq!(r["cpu_cycles"].as_deref(), Some(NO_PMU));
        assert_eq!(r["cmt"].as_deref(), Some(NO_CQM));
        // Software events go to the real syscall; this only checks the reason format.
        if let Some(why) = &r["page_faults"] {
            assert!(why.starts_with('E') && why.contains(": "), "{why}");
        }
        std::fs::create_dir_all(paths.intel_cqm_type().parent().unwrap()).unwrap();
        std::fs::write(paths.intel_cqm_type(), "junk\n").unwrap();
        let r = probe_all(&paths);
        assert!(r["mbml"].as_deref().unwrap().contains("not a perf type number"));
    }

    #[test]
    fn errno_reasons_are_named() {
        // An invalid type fails on every kernel.
        let e = open_event(0xffff_fff0, 0).unwrap_err();
        assert!(e.starts_with('E') && e.contains(": "), "{e}");
    }
}

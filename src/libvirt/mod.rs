//! The libvirt client: the only code that runs `virsh`.
//!
//! Why virsh and not libvirt.so: the shipped binary stays static and free of libvirt (the hook
//! path must start like `/bin/true`), and virsh already speaks every transport and auth method a
//! URI can name. Why one module: every call needs the same four things, which were spread over
//! three commands before — a time bound that kills the whole process group ([`process`]), the
//! batching of many commands into one virsh over one connection ([`batch`]), output parsers
//! ([`parse`], [`event`]) and quoting of untrusted names. Commands build calls with the typed
//! constructors below, never argv by hand, so a domain name only ever reaches virsh as one
//! quoted word and always by UUID where one is known.
//!
//! Layering: this module uses only `core` (versions) and `support` (errors, paths); `cmd` uses
//! it; `host` does not know it (hook mode must never call virsh: libvirt waits for the hook
//! while holding the locks virsh would need).

pub mod batch;
pub mod event;
pub mod parse;
pub mod process;

pub use batch::{Call, MemFile, Reply};
pub use process::{stop_all, Virsh};

use crate::support::error::{exit, Error, Result};

/// Which guests a `list` call prints (always by UUID).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// `list --all`: every guest, running or not.
    All,
    /// `list`: the running ones.
    Active,
    /// `list --transient`: the running guests without a persistent config.
    Transient,
}

/// `list --uuid` of `which`.
pub fn list(which: Listing) -> Call {
    let mut c = vec!["list".to_string()];
    match which {
        Listing::All => c.push("--all".into()),
        Listing::Active => {}
        Listing::Transient => c.push("--transient".into()),
    }
    c.push("--uuid".into());
    c
}

/// `dominfo --domain D`: looks a guest up by ID, UUID or name as virsh does.
pub fn dominfo(domain: &str) -> Call {
    batch::call(&["dominfo", "--domain", domain])
}

/// `domname --domain UUID`.
pub fn domname(uuid: &str) -> Call {
    batch::call(&["domname", "--domain", uuid])
}

/// Which config `dumpxml` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Xml {
    /// The live definition of a running guest (the persistent one otherwise).
    Live,
    /// The persistent config.
    Persistent,
    /// The persistent config with its secrets (VNC/SPICE passwords), for defining it back.
    PersistentWithSecrets,
}

/// `dumpxml [--inactive] [--security-info] --domain D`.
pub fn dumpxml(domain: &str, which: Xml) -> Call {
    let mut c = vec!["dumpxml".to_string()];
    if which != Xml::Live {
        c.push("--inactive".into());
    }
    if which == Xml::PersistentWithSecrets {
        c.push("--security-info".into());
    }
    c.extend(["--domain".to_string(), domain.to_string()]);
    c
}

/// `perf --domain UUID [--enable a,b] [--disable c] --config`: libvirt's atomic change of the
/// persistent config's `<perf>` alone (virDomainSetPerfEvents, VIR_DOMAIN_AFFECT_CONFIG), under
/// its own domain lock. It fails on a guest that is no longer defined.
pub fn perf_config(uuid: &str, enable: &[&str], disable: &[&str]) -> Call {
    let mut c = batch::call(&["perf", "--domain", uuid]);
    if !enable.is_empty() {
        c.extend(["--enable".to_string(), enable.join(",")]);
    }
    if !disable.is_empty() {
        c.extend(["--disable".to_string(), disable.join(",")]);
    }
    c.push("--config".into());
    c
}

/// `define --file PATH`.
pub fn define_file(path: &str) -> Call {
    batch::call(&["define", "--file", path])
}

/// Whether a reply says the driver has no such API (the test driver has no perf events).
pub fn unsupported(r: &Reply) -> bool {
    r.failed() && r.stderr.contains("not supported")
}

/// The UUIDs a `list` call of a batch printed; its failure is an error for the whole run
/// (libvirt cannot be reached).
pub fn listed(virsh: &Virsh, r: &Reply) -> Result<Vec<String>> {
    if r.failed() {
        return Err(Error::Command { what: format!("virsh list{}", virsh.on()), code: exit::FAILURE, msg: r.message() });
    }
    Ok(parse::list(&r.stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_calls() {
        assert_eq!(list(Listing::All), ["list", "--all", "--uuid"]);
        assert_eq!(list(Listing::Active), ["list", "--uuid"]);
        assert_eq!(dumpxml("u", Xml::PersistentWithSecrets), ["dumpxml", "--inactive", "--security-info", "--domain", "u"]);
        assert_eq!(dumpxml("u", Xml::Live), ["dumpxml", "--domain", "u"]);
        assert_eq!(perf_config("u", &["a", "b"], &["c"]), ["perf", "--domain", "u", "--enable", "a,b", "--disable", "c", "--config"]);
        assert_eq!(perf_config("u", &[], &["c"]), ["perf", "--domain", "u", "--disable", "c", "--config"]);
    }
}

//! Parsers of virsh's output (LC_ALL=C): `version --daemon`, `list`, `dominfo`.

use crate::core::version::Version;

/// The libvirt version from `virsh version --daemon`: the daemon's (what actually runs the
/// guests), else the driver API's, else the client library's.
pub fn version(text: &str) -> Option<Version> {
    let field = |label: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .and_then(|rest| rest.split_whitespace().last())
            .and_then(|v| v.parse::<Version>().ok())
    };
    field("Running against daemon:").or_else(|| field("Using API:")).or_else(|| field("Using library:"))
}

/// The entries of `virsh list --uuid` (or `--name`), one per line. Split at '\n' only: libvirt
/// refuses a newline in a name but accepts a '\r', which a line reader would drop. Blank lines
/// end lists.
pub fn list(text: &str) -> Vec<String> {
    let names: Vec<String> = text.split('\n').filter(|l| !l.is_empty()).map(str::to_string).collect();
    dedup(&names)
}

/// The UUID in `virsh dominfo` output.
pub fn dominfo_uuid(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("UUID:")).map(str::trim).filter(|u| !u.is_empty())
}

/// `names` in order, each once.
pub fn dedup(names: &[String]) -> Vec<String> {
    let mut seen = std::collections::HashSet::with_capacity(names.len());
    names.iter().filter(|n| seen.insert(n.as_str())).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_version() {
        let daemon = "Compiled against library: libvirt 9.0.0\nUsing library: libvirt 9.0.0\nUsing API: QEMU 9.0.0\nRunning hypervisor: QEMU 7.2.0\nRunning against daemon: 8.0.0\n";
        assert_eq!(version(daemon), Some(Version::new(8, 0, 0)));
        let local = "Compiled against library: libvirt 9.0.0\nUsing library: libvirt 9.1.0\nUsing API: TEST 9.0.0\nRunning hypervisor: TEST 0.0.2\n";
        assert_eq!(version(local), Some(Version::new(9, 0, 0)));
        assert_eq!(version("Using library: libvirt 10.10.0\n"), Some(Version::new(10, 10, 0)));
        assert_eq!(version("Running hypervisor: QEMU 7.2.0\n"), None);
        assert_eq!(version(""), None);
    }

    #[test]
    fn lists_and_dominfo() {
        assert_eq!(list("a b\n-x\n\na b\ncr\r\n\n"), vec!["a b".to_string(), "-x".to_string(), "cr\r".to_string()]);
        assert_eq!(dominfo_uuid("Id:  -\nName:  a\nUUID:           6695eb01-f6a4-8304-79aa-97f2502e193f\n"), Some("6695eb01-f6a4-8304-79aa-97f2502e193f"));
        assert_eq!(dominfo_uuid("Name: a\n"), None);
    }
}

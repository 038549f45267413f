//! Integration tests: they run the built binary, as an operator or libvirt would.
//! Tests that need root, a real libvirtd or virt-xml-validate skip with a printed reason elsewhere.
//! Tests that change this host (e2e, the .deb install) run only with VPH_SYSTEM_TESTS=1.

mod ansible;
mod bounds;
mod cache;
mod cli_docs;
mod common;
mod create;
mod e2e;
mod exporter;
mod filter;
mod heal;
mod hook;
mod host;
mod hostile;
mod libvirtd;
mod mac;
mod namespaces;
mod race;
mod package;
mod resctrl;
mod snapshot;
mod status;
mod systemd;
mod top;
mod virsh;
mod virsh_apply;
mod virsh_define;
mod virsh_real;
mod virsh_remote;
mod virsh_test_driver;
mod watch;

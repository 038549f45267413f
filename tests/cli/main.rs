//! Integration tests: they run the built binary, as an operator or libvirt would.
//! Tests that need root, a real libvirtd or virt-xml-validate skip with a printed reason elsewhere.

mod common;
mod e2e;
mod filter;
mod heal;
mod hook;
mod hostile;
mod host;
mod package;
mod status;
mod virsh;

//! How long the tool waits on anything outside itself. libvirt waits for a hook with the guest's
//! operation on hold, so in hook mode every wait is short; commands an operator runs may wait a
//! little longer, and say why when they give up. Nothing waits without a bound.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static HOOK_MODE: AtomicBool = AtomicBool::new(false);

/// Called once when the process runs as a libvirt hook.
pub fn enter_hook_mode() {
    HOOK_MODE.store(true, Ordering::Relaxed);
}

fn hook_mode() -> bool {
    HOOK_MODE.load(Ordering::Relaxed)
}

/// The cache lock: a writer holds it for a few milliseconds, so a longer wait means a stuck or
/// hostile holder; the tool then goes on without writing the cache.
pub fn cache_lock() -> Duration {
    if hook_mode() {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(3)
    }
}

/// `virtqemud --version` / `libvirtd --version` (about 11 ms), the last way to learn the version.
pub fn daemon_version() -> Duration {
    if hook_mode() {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(5)
    }
}

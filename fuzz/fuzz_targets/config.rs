//! `Config::parse` on arbitrary UTF-8 never panics, and the error an operator sees is one line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virt_perf_hook::config::Config;
use virt_perf_hook::Error;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(msg) = Config::parse(text) {
        // `Config::parse` may echo a key containing "\n"; the displayed error collapses it.
        let shown = Error::config("/etc/virt-perf-hook/config.json", msg).to_string();
        assert!(!shown.contains(['\n', '\r']), "multi-line config error: {shown:?}");
    }
});

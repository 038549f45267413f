//! `Config::parse` on arbitrary UTF-8 never panics, and its error message is one line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virt_perf_hook::core::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(msg) = Config::parse(text) {
        // The raw message, as the operator sees it after "PATH: ": a key or value it echoes
        // must not bring a line break with it.
        assert!(!msg.contains(['\n', '\r']), "multi-line config error: {msg:?}");
    }
});

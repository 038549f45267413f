//! virt-perf-hook: argument handling lives in `cli`; this only maps the outcome to an exit code.

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    std::process::exit(virt_perf_hook::cli::main(args));
}

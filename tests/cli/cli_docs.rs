//! The man page and the shell completions are made from the command table; the shipped copies
//! must be exactly what the binary generates, so none of them can drift from the parser.
//! `VPH_BLESS=1 cargo test --test cli generated` rewrites them after a change to the table.

use std::path::Path;
use std::process::Command;

use crate::common::*;

/// Shipped file (from the repository root) and the document that generates it.
const GENERATED: [(&str, &str); 4] = [
    ("packaging/virt-perf-hook.1", "man"),
    ("completions/virt-perf-hook.bash", "bash"),
    ("completions/_virt-perf-hook", "zsh"),
    ("completions/virt-perf-hook.fish", "fish"),
];

fn generate(doc: &str) -> String {
    let out = Command::new(BIN).args(["__generate", doc]).output().unwrap();
    assert!(out.status.success(), "__generate {doc}: {}", stderr(&out));
    stdout(&out)
}

#[test]
fn generated_docs_match_the_shipped_ones() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bless = std::env::var_os("VPH_BLESS").is_some_and(|v| v == "1");
    for (file, doc) in GENERATED {
        let path = root.join(file);
        let want = generate(doc);
        if bless {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &want).unwrap();
        }
        let shipped = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            shipped == want,
            "{file} differs from 'virt-perf-hook __generate {doc}'; run VPH_BLESS=1 cargo test --test cli generated"
        );
    }
}

/// Every command and option the parser takes appears in the help, the man page and each
/// completion; hidden ones (`__generate`, `--live`) in none.
#[test]
fn generated_docs_name_every_command_and_option() {
    let help = stdout(&Command::new(BIN).arg("--help").output().unwrap());
    let docs: Vec<(String, String)> =
        GENERATED.iter().map(|(_, d)| (d.to_string(), generate(d))).chain([("help".into(), help)]).collect();
    let commands = ["filter", "define", "create", "apply", "status", "watch", "exporter", "top", "events", "check", "refresh", "qemu", "daemon"];
    let options = ["config", "verbose", "quiet", "help", "version", "connect", "dry-run", "diff", "validate", "paused", "all", "json", "timeout",
        "listen", "textfile", "interval", "sort", "once", "readonly"];
    for (doc, text) in &docs {
        for c in commands {
            assert!(text.contains(c), "{doc} lacks {c}");
        }
        let text = text.replace("\\-", "-");
        for o in options {
            assert!(text.contains(&format!("--{o}")) || (doc == "fish" && text.contains(&format!("-l {o}"))), "{doc} lacks --{o}");
        }
        assert!(!text.contains("__generate") || doc == "man" || text.contains("'virt-perf-hook __generate')"), "{doc} shows __generate");
        assert!(!text.contains("--live") && !text.contains("-l live") || doc == "man", "{doc} offers --live");
    }
}

/// The completions are valid scripts of their shells, and bash's completes what the table says.
#[test]
fn completions_load_in_their_shells() {
    let root = TempDir::new("compl");
    for (_, doc) in &GENERATED[1..] {
        let file = root.write(&format!("c.{doc}"), &generate(doc));
        let (shell, check): (&str, String) = match *doc {
            "bash" => ("bash", format!(
                "source {f}; COMP_WORDS=(virt-perf-hook fil); COMP_CWORD=1; _virt_perf_hook; echo \"${{COMPREPLY[*]}}\"; \
                 COMP_WORDS=(virt-perf-hook apply --d); COMP_CWORD=2; _virt_perf_hook; echo \"${{COMPREPLY[*]}}\"",
                f = file.display()
            )),
            "zsh" => ("zsh", format!("zsh -n {}", file.display())),
            _ => ("fish", format!("fish --no-execute {}", file.display())),
        };
        if !have(shell) {
            skipping("completions_load_in_their_shells", &format!("{shell} is not installed"));
            continue;
        }
        let out = if shell == "bash" { Command::new("bash").arg("-c").arg(&check).output() } else { Command::new("sh").arg("-c").arg(&check).output() };
        let out = out.unwrap();
        assert!(out.status.success() && stderr(&out).is_empty(), "{doc}: {}", stderr(&out));
        if shell == "bash" {
            assert_eq!(stdout(&out), "filter\n--dry-run\n", "bash completion");
        }
    }
}

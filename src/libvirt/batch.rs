//! Many virsh commands in one virsh process, each one's output and errors kept apart.
//!
//! A sweep used to start two or three virsh processes per guest, each connecting to libvirt
//! anew (~33 ms a guest on a real libvirtd). virsh also runs a command string, `;`-separated,
//! given as its only argument, over one connection: so each phase of a sweep (list, look up,
//! read the configs, define the changed ones) is one virsh process, or a few when the string
//! would grow past [`MAX_STRING`].
//!
//! Framing: every command is preceded by `echo --err M; echo M;`, M a marker of this command
//! and run (128 random bits, so no guest's XML can carry one). virsh prints `M` on stdout
//! (with `-q`, without a newline) and `error: M` on stderr, so a command's output and errors
//! are what lies between its marker and the next on each stream; a final marker closes the
//! last command. virsh goes on after a failing command and exits with the last command's
//! status, which says nothing: a command failed when its own stderr has an `error:` line, or
//! when virsh ended before its closing marker. The command string is not written to virsh's
//! stdin: virsh would read it as an interactive session and echo prompts into the output.
//!
//! Words are quoted for virsh's tokenizer (`vshCommandStringGetArg` in libvirt's tools/vsh.c):
//! a word of only `[A-Za-z0-9_./:=@%+,-]` goes bare, anything else in single quotes, inside
//! which nothing is special (blanks, `;`, newlines, `#`, `"`, `\`); a `'` is written `'\''`.

use std::collections::VecDeque;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::process::Stdio;
use std::sync::mpsc;

use crate::libvirt::process::{Running, Virsh};
use crate::support::error::{exit, one_line, Error, Result};

/// The longest command string given to one virsh, well under Linux's 128 KiB per argument
/// (MAX_ARG_STRLEN). Not longer: virsh copies the rest of the string for every word it reads
/// (`g_strdup` in vshCommandStringGetArg) and keeps the copies until it ends, so its memory grows
/// with the square of the string's length (measured on libvirt 9.0.0: a 64 KiB string of
/// `domname` commands took virsh to 60 MB, 48 KiB of `dumpxml` to 37 MB, from 20 MB at rest).
pub const MAX_STRING: usize = 32 * 1024;

/// One virsh command: its words, unquoted (`["dumpxml", "--inactive", "--domain", uuid]`).
pub type Call = Vec<String>;

/// Builds a [`Call`] from words.
pub fn call<S: AsRef<str>>(words: &[S]) -> Call {
    words.iter().map(|w| w.as_ref().to_string()).collect()
}

/// What one command of a batch printed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    /// Its standard output, exactly.
    pub stdout: String,
    /// Its standard error (virsh's `error: …` lines).
    pub stderr: String,
    /// Why it did not run to its end (virsh ended first), if so.
    pub cut: Option<String>,
}

impl Reply {
    /// Whether it failed: an `error:` line, or it did not run to its end.
    pub fn failed(&self) -> bool {
        self.cut.is_some() || self.stderr.lines().any(|l| l.starts_with("error:"))
    }

    /// Its error in one line (for the table).
    pub fn message(&self) -> String {
        let err = one_line(&self.stderr);
        let err = err.trim();
        match (&self.cut, err.is_empty()) {
            (_, false) => err.to_string(),
            (Some(why), true) => why.clone(),
            (None, true) => "virsh printed nothing".to_string(),
        }
    }
}

/// `word` as one token of virsh's command-string syntax.
pub fn quote(word: &str) -> String {
    let bare = |b: u8| b.is_ascii_alphanumeric() || b"_./:=@%+,-".contains(&b);
    if !word.is_empty() && word.bytes().all(bare) {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// A batch named by its first real command, for a timeout's message (`dumpxml, …`).
fn calls_label(string: &str) -> String {
    let first = string.split("; ").find(|c| !c.starts_with("echo ")).unwrap_or("");
    let word = first.split(' ').next().unwrap_or("");
    format!("{word} (batch)")
}

/// 32 hex digits from the kernel's random source; the markers' secret part.
fn random_tag() -> Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Error::io("/dev/urandom", "read", e))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The markers of one run: `vph` + tag + `.` + index + `.` (the closing dot keeps marker 1
/// from being the start of marker 10).
struct Markers {
    tag: String,
}

impl Markers {
    fn get(&self, i: usize) -> String {
        format!("vph{}.{i}.", self.tag)
    }
}

/// Command strings for `calls`, each at most [`MAX_STRING`] bytes (a single call longer than
/// that gets a string of its own): `(first call index, string, number of calls)`.
fn strings(markers: &Markers, calls: &[Call]) -> Vec<(usize, String, usize)> {
    let mut out: Vec<(usize, String, usize)> = Vec::new();
    let mut cur = String::new();
    let (mut first, mut count) = (0, 0);
    for (i, c) in calls.iter().enumerate() {
        let m = markers.get(i);
        let words: Vec<String> = c.iter().map(|w| quote(w)).collect();
        let piece = format!("echo --err {m}; echo {m}; {}; ", words.join(" "));
        // Room for the closing marker (the next call's or the end's): about the same length.
        let closing = 2 * m.len() + 32;
        if count > 0 && cur.len() + piece.len() + closing > MAX_STRING {
            out.push((first, close(markers, std::mem::take(&mut cur), first + count), count));
            first = i;
            count = 0;
        }
        cur.push_str(&piece);
        count += 1;
    }
    if count > 0 {
        out.push((first, close(markers, cur, first + count), count));
    }
    out
}

fn close(markers: &Markers, mut s: String, end: usize) -> String {
    let m = markers.get(end);
    s.push_str(&format!("echo --err {m}; echo {m}"));
    s
}

/// Cuts one output stream at its markers as it arrives. Section `i` is what lies between
/// marker `i` and marker `i + 1`.
struct Frames {
    /// Marker `i` as it appears on this stream.
    marker: Box<dyn Fn(usize) -> Vec<u8> + Send>,
    next: usize,
    buf: Vec<u8>,
    /// How far `buf` is known not to hold marker `next`.
    searched: usize,
    /// Whatever came before the first marker.
    preamble: Vec<u8>,
}

impl Frames {
    fn new(marker: Box<dyn Fn(usize) -> Vec<u8> + Send>, first: usize) -> Frames {
        Frames { marker, next: first, buf: Vec::new(), searched: 0, preamble: Vec::new() }
    }

    /// Takes `data`; returns the sections it completed, as (index, bytes).
    fn push(&mut self, data: &[u8], first: usize) -> Vec<(usize, Vec<u8>)> {
        self.buf.extend_from_slice(data);
        let mut done = Vec::new();
        loop {
            let m = (self.marker)(self.next);
            let from = self.searched.saturating_sub(m.len());
            let Some(at) = find(&self.buf[from..], &m).map(|p| p + from) else {
                self.searched = self.buf.len();
                break;
            };
            let section: Vec<u8> = self.buf.drain(..at + m.len()).take(at).collect();
            if self.next == first {
                self.preamble = section;
            } else {
                done.push((self.next - 1, section));
            }
            self.next += 1;
            self.searched = 0;
        }
        done
    }

    /// At the end of the stream: the section of the command that was running, if any.
    fn finish(&mut self, first: usize) -> Option<(usize, Vec<u8>)> {
        (self.next > first).then(|| (self.next - 1, std::mem::take(&mut self.buf)))
    }

    /// What no command claims: the text before the first marker (all of it when there was none).
    fn unclaimed(&mut self, first: usize) -> Vec<u8> {
        if self.next == first {
            std::mem::take(&mut self.buf)
        } else {
            std::mem::take(&mut self.preamble)
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        match hay[i..=hay.len() - needle.len()].iter().position(|&b| b == first) {
            Some(p) => i += p,
            None => return None,
        }
        if &hay[i..i + needle.len()] == needle {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// A section as text: lossy UTF-8, the newline virsh may print after a stdout marker dropped.
fn text(mut b: Vec<u8>) -> String {
    if b.first() == Some(&b'\n') {
        b.remove(0);
    }
    String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

impl Virsh {
    /// Runs `calls` in as few virsh processes as [`MAX_STRING`] allows, one after another, and
    /// hands each call's [`Reply`] to `each` in order, as soon as it is complete (a reply is not
    /// kept: a sweep holds one guest's XML at a time). `inherit` are descriptors virsh gets
    /// (open in it under the same numbers). `Err` when virsh cannot run or runs none of the
    /// commands (it rejected the string), or when `each` fails.
    pub fn batch(&self, calls: &[Call], inherit: &[RawFd], each: &mut dyn FnMut(usize, Reply) -> Result<()>) -> Result<()> {
        if calls.is_empty() {
            return Ok(());
        }
        let markers = Markers { tag: random_tag()? };
        for (first, string, count) in strings(&markers, calls) {
            self.run_string(&markers, first, count, &string, inherit, each)?;
        }
        Ok(())
    }

    /// [`Virsh::batch`], the replies collected (for small batches: lists, look-ups).
    pub fn batch_collect(&self, calls: &[Call]) -> Result<Vec<Reply>> {
        let mut out = Vec::with_capacity(calls.len());
        self.batch(calls, &[], &mut |_, r| {
            out.push(r);
            Ok(())
        })?;
        Ok(out)
    }

    fn run_string(
        &self,
        markers: &Markers,
        first: usize,
        count: usize,
        string: &str,
        inherit: &[RawFd],
        each: &mut dyn FnMut(usize, Reply) -> Result<()>,
    ) -> Result<()> {
        let mut cmd = self.command(&["-q", string]);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        if !inherit.is_empty() {
            let fds = inherit.to_vec();
            // SAFETY: runs in the child between fork and exec and calls only fcntl, which is
            // async-signal-safe; it allocates nothing (`fds` was built before the fork).
            unsafe {
                use std::os::unix::process::CommandExt;
                cmd.pre_exec(move || {
                    for &fd in &fds {
                        if nix::libc::fcntl(fd, nix::libc::F_SETFD, 0) == -1 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
        }
        log::debug!("running virsh with {count} command(s) ({} bytes)", string.len());
        let what = calls_label(string);
        let mut run = self.spawn(cmd, &what)?;
        let result = self.read_replies(&mut run, markers, first, count, each);
        if result.is_err() {
            run.kill();
        }
        let code = run.finish()?;
        let (delivered, stderr_rest) = result?;
        if delivered < first + count {
            // Those virsh never reached: it rejected the string, or it died.
            let why = match code {
                Some(c) => format!("virsh exited with status {c} before running it"),
                None => "virsh was killed by a signal before running it".to_string(),
            };
            if delivered == first {
                // Not one command ran: nothing to do with any one guest.
                let msg = one_line(&stderr_rest);
                return Err(Error::Command {
                    what: format!("virsh{}", self.on()),
                    code: exit::FAILURE,
                    msg: if msg.trim().is_empty() { why } else { msg },
                });
            }
            for i in delivered..first + count {
                each(i, Reply { cut: Some(why.clone()), ..Reply::default() })?;
            }
        }
        Ok(())
    }

    /// Reads both streams of a batch's virsh, handing out replies as they complete. Returns
    /// the index after the last reply handed out and what stderr held that no command claimed.
    fn read_replies(
        &self,
        run: &mut Running,
        markers: &Markers,
        first: usize,
        count: usize,
        each: &mut dyn FnMut(usize, Reply) -> Result<()>,
    ) -> Result<(usize, String)> {
        let mut stdout = run.child.stdout.take().expect("piped stdout");
        let stderr = run.child.stderr.take().expect("piped stderr");
        let end = first + count;
        // stderr on a thread of its own, section by section: virsh never waits on us for it.
        let (tx, rx) = mpsc::channel::<(usize, Vec<u8>)>();
        let reader = spawn_stderr_reader(stderr, markers, first, tx);
        let out_marker = {
            let tag = markers.tag.clone();
            move |i: usize| Markers { tag: tag.clone() }.get(i).into_bytes()
        };
        let mut frames = Frames::new(Box::new(out_marker), first);
        let mut pending: VecDeque<(usize, Vec<u8>)> = VecDeque::new();
        let errors = |i: usize, pending: &mut VecDeque<(usize, Vec<u8>)>| -> Vec<u8> {
            // Sections arrive in order; the one for `i` was written before stdout's next marker.
            loop {
                if let Some(pos) = pending.iter().position(|(j, _)| *j == i) {
                    return pending.remove(pos).map(|(_, b)| b).unwrap_or_default();
                }
                match rx.recv() {
                    Ok(s) => pending.push_back(s),
                    Err(_) => return Vec::new(),
                }
            }
        };
        let mut delivered = first;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = match stdout.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Other(format!("cannot read virsh's output: {e}"))),
            };
            for (i, out) in frames.push(&chunk[..n], first) {
                if i >= end {
                    continue;
                }
                let err = errors(i, &mut pending);
                run.progress();
                each(i, Reply { stdout: text(out), stderr: text(err), cut: None })?;
                delivered = i + 1;
            }
        }
        // The command that was running when stdout ended (virsh died in it), if any.
        if let Some((i, out)) = frames.finish(first).filter(|(i, _)| *i < end && *i >= delivered) {
            let err = errors(i, &mut pending);
            let cut = Some("virsh ended while running it".to_string());
            each(i, Reply { stdout: text(out), stderr: text(err), cut })?;
            delivered = i + 1;
        }
        drop(rx);
        let preamble = reader.join().unwrap_or_default();
        Ok((delivered, preamble))
    }
}

/// Splits virsh's stderr into the sections of each command (sent on `tx` as they complete) on a
/// thread of its own; the thread returns what came before the first marker.
fn spawn_stderr_reader(
    mut stderr: std::process::ChildStderr,
    markers: &Markers,
    first: usize,
    tx: mpsc::Sender<(usize, Vec<u8>)>,
) -> std::thread::JoinHandle<String> {
    let tag = markers.tag.clone();
    let err_marker = move |i: usize| format!("error: {}\n", Markers { tag: tag.clone() }.get(i)).into_bytes();
    std::thread::spawn(move || {
        let mut frames = Frames::new(Box::new(err_marker), first);
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            match stderr.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    for s in frames.push(&chunk[..n], first) {
                        let _ = tx.send(s);
                    }
                }
            }
        }
        let unclaimed = frames.unclaimed(first);
        if let Some(s) = frames.finish(first) {
            let _ = tx.send(s);
        }
        String::from_utf8_lossy(&unclaimed).into_owned()
    })
}

/// An anonymous in-memory file (memfd) holding `bytes`, for virsh to read as
/// `/proc/self/fd/N`: nothing is written to disk (a config read with `--security-info` holds
/// VNC/SPICE passwords), nothing lands in a directory another user could write to, and nothing
/// is left behind if this process dies. Close-on-exec: only a batch that names it in `inherit`
/// passes it on.
pub struct MemFile {
    fd: OwnedFd,
}

impl MemFile {
    pub fn new(name: &str, bytes: &[u8]) -> std::io::Result<MemFile> {
        use nix::sys::memfd::{memfd_create, MFdFlags};
        let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC).map_err(std::io::Error::from)?;
        let mut file = std::fs::File::from(fd);
        std::io::Write::write_all(&mut file, bytes)?;
        Ok(MemFile { fd: OwnedFd::from(file) })
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Its path in the process that inherits it.
    pub fn path(&self) -> String {
        format!("/proc/self/fd/{}", self.fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_for_virsh() {
        assert_eq!(quote("dumpxml"), "dumpxml");
        assert_eq!(quote("--inactive"), "--inactive");
        assert_eq!(quote("6695eb01-f6a4-8304-79aa-97f2502e193f"), "6695eb01-f6a4-8304-79aa-97f2502e193f");
        assert_eq!(quote("/proc/self/fd/7"), "/proc/self/fd/7");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("a;rm -rf /"), "'a;rm -rf /'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("#x"), "'#x'");
        assert_eq!(quote("a\nb\r"), "'a\nb\r'");
        assert_eq!(quote("\"$(x)\\"), "'\"$(x)\\'");
    }

    #[test]
    fn strings_stay_under_the_limit() {
        let m = Markers { tag: "0".repeat(32) };
        let calls: Vec<Call> = (0..3000).map(|i| call(&["dumpxml", "--inactive", "--domain", &format!("{i:036}")])).collect();
        let s = strings(&m, &calls);
        assert!(s.len() > 1);
        assert!(s.iter().all(|(_, t, _)| t.len() <= MAX_STRING), "{:?}", s.iter().map(|x| x.1.len()).collect::<Vec<_>>());
        assert_eq!(s.iter().map(|x| x.2).sum::<usize>(), 3000);
        let mut next = 0;
        for (first, text, count) in &s {
            assert_eq!(*first, next);
            assert!(text.starts_with(&format!("echo --err {}; echo {}; dumpxml", m.get(next), m.get(next))));
            assert!(text.ends_with(&format!("echo --err {}; echo {}", m.get(next + count), m.get(next + count))));
            next += count;
        }
        // One call longer than the limit goes alone.
        let long = vec![call(&["a"]), call(&["dominfo", "--domain", &"x".repeat(MAX_STRING)]), call(&["b"])];
        let s = strings(&m, &long);
        assert_eq!(s.iter().map(|x| (x.0, x.2)).collect::<Vec<_>>(), [(0, 1), (1, 1), (2, 1)]);
    }

    #[test]
    fn frames_split_at_markers_across_reads() {
        let m = |i: usize| format!("M{i}.").into_bytes();
        let stream = b"warnM0.out0M1.M2.two\nM3.tail";
        for step in [1, 2, 3, 5, stream.len()] {
            let mut f = Frames::new(Box::new(m), 0);
            let mut got = Vec::new();
            for c in stream.chunks(step) {
                got.extend(f.push(c, 0));
            }
            assert_eq!(got, vec![(0, b"out0".to_vec()), (1, b"".to_vec()), (2, b"two\n".to_vec())], "step {step}");
            assert_eq!(f.preamble, b"warn");
            assert_eq!(f.finish(0), Some((3, b"tail".to_vec())));
        }
        // A batch that starts at call 10: marker 1 is not the start of marker 10.
        let mut f = Frames::new(Box::new(m), 10);
        assert_eq!(f.push(b"M1.M10.aM11.", 10), vec![(10, b"a".to_vec())]);
        assert_eq!(f.preamble, b"M1.");
    }

    #[test]
    fn replies() {
        let ok = Reply { stdout: "x".into(), stderr: String::new(), cut: None };
        assert!(!ok.failed());
        let err = Reply { stderr: "error: failed to get domain 'a'\nerror: Domain not found\n".into(), ..Reply::default() };
        assert!(err.failed());
        assert_eq!(err.message(), "error: failed to get domain 'a' error: Domain not found");
        let cut = Reply { cut: Some("virsh ended while running it".into()), ..Reply::default() };
        assert!(cut.failed());
        assert_eq!(cut.message(), "virsh ended while running it");
        assert_eq!(text(b"\nname\r\n".to_vec()), "name\r\n");
    }

    #[test]
    fn memfiles_read_back_by_path() {
        let f = MemFile::new("vph-test", b"<domain/>").unwrap();
        assert_eq!(std::fs::read_to_string(f.path()).unwrap(), "<domain/>");
    }
}

//! Waiting on child processes with a deadline: every wait a test makes on a process it
//! started ends, or the test fails. Past its deadline a child is killed (SIGKILL, by its
//! own PID: never by name, never a process the test did not start) and the test panics,
//! showing what the child had written so far.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long one doproxy run may take in a test (the longest waits a test config allows:
/// `wait_timeout` 20 s, `lock_timeout` 30 s, plus retries).
pub const RUN_DEADLINE: Duration = Duration::from_secs(90);
/// How long a small helper command (`kill`, `haproxy -c`, `openssl`, `etcdctl`) may take.
pub const TOOL_DEADLINE: Duration = Duration::from_secs(30);

/// `cmd` started through `setpriv --pdeathsig TERM`, so that its process gets SIGTERM when
/// the thread that starts it ends: the test finishing, or its whole process killed (a
/// mutation run's timeout SIGKILLs the test binary, and no `Drop` runs then). For
/// long-running children (the autoscaler daemon), which must never outlive their test.
pub fn dies_with_its_test(cmd: &Command) -> Command {
    let mut wrapped = Command::new("setpriv");
    wrapped
        .args(["--pdeathsig", "TERM", "--"])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    if let Some(dir) = cmd.get_current_dir() {
        wrapped.current_dir(dir);
    }
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    wrapped
}

/// Waits for `child` to exit, for at most `timeout`. Past it the child is killed by its
/// PID, reaped, and the test panics.
pub fn wait_with_deadline(child: &mut Child, timeout: Duration) -> ExitStatus {
    match try_wait_until(child, Instant::now() + timeout) {
        Some(status) => status,
        None => {
            let pid = child.id();
            kill_and_reap(child);
            panic!("process {pid} was still running after {timeout:?}: killed it (SIGKILL)");
        }
    }
}

/// Polls `child` until it exits (its status) or `deadline` passes (`None`, still running).
pub fn try_wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(e) => panic!("waiting for process {}: {e}", child.id()),
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// SIGKILL to `child` (by its PID) and reap it, waiting at most 10 s for the kernel.
pub fn kill_and_reap(child: &mut Child) {
    let _ = child.kill();
    if try_wait_until(child, Instant::now() + Duration::from_secs(10)).is_none() {
        panic!("process {} survived SIGKILL for 10 s", child.id());
    }
}

/// What a reader thread collected from one pipe, and a notice when the pipe closed.
struct Drain {
    buf: Arc<Mutex<Vec<u8>>>,
    closed: mpsc::Receiver<()>,
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> Drain {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let (tx, closed) = mpsc::channel();
    match pipe {
        Some(mut pipe) => {
            let b = buf.clone();
            std::thread::spawn(move || {
                let mut chunk = [0u8; 8192];
                loop {
                    match pipe.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => b.lock().unwrap().extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = tx.send(());
            });
        }
        None => {
            let _ = tx.send(());
        }
    }
    Drain { buf, closed }
}

impl Drain {
    /// The bytes read; waits up to `grace` for the pipe to close (a grandchild holding it
    /// open must not hang the test either).
    fn take(self, grace: Duration) -> (Vec<u8>, bool) {
        let closed = self.closed.recv_timeout(grace).is_ok();
        let bytes = std::mem::take(&mut *self.buf.lock().unwrap());
        (bytes, closed)
    }
}

/// Collects `child`'s piped stdout and stderr while waiting for it, for at most `timeout`.
/// Past it the child is killed and the test panics with what it had written.
pub fn output_with_deadline(mut child: Child, timeout: Duration) -> Output {
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let status = try_wait_until(&mut child, Instant::now() + timeout);
    if status.is_none() {
        kill_and_reap(&mut child);
    }
    let (stdout, out_closed) = out.take(Duration::from_secs(5));
    let (stderr, err_closed) = err.take(Duration::from_secs(5));
    let Some(status) = status else {
        panic!(
            "process {} was still running after {timeout:?}: killed it (SIGKILL)\nstdout: {}\nstderr: {}",
            child.id(),
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        );
    };
    assert!(
        out_closed && err_closed,
        "process {} exited, but something it started still holds its output open\nstderr: {}",
        child.id(),
        String::from_utf8_lossy(&stderr)
    );
    Output {
        status,
        stdout,
        stderr,
    }
}

/// Runs `cmd` (stdin closed, output captured) for at most `timeout`.
pub fn run_with_deadline(cmd: &mut Command, timeout: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    output_with_deadline(child, timeout)
}

/// Sends `signal` (e.g. `TERM`, `0`) to `pid`, a process this test started; true when
/// `kill` succeeded (for `0`: the process exists). Never panics (it runs in `Drop`s too):
/// a `kill` that does not return within [`TOOL_DEADLINE`] is killed and counts as failed.
pub fn signal(pid: u32, signal: &str) -> bool {
    let Ok(mut child) = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    match try_wait_until(&mut child, Instant::now() + TOOL_DEADLINE) {
        Some(status) => status.success(),
        None => {
            let _ = child.kill();
            let _ = try_wait_until(&mut child, Instant::now() + Duration::from_secs(5));
            false
        }
    }
}

//! Runs `fleetctl` and `systemctl` as child processes: explicit argv, no
//! shell, stdin closed (fleetctl never reads unit names from it; an open
//! stdin only invites a prompt), output captured, and a deadline. Some
//! fleetctl waits cannot be bounded by its own flags (`submit` waits for
//! a new unit without limit, fleetctl.go lazyCreateUnits), so the deadline
//! is the backstop: SIGTERM, then SIGKILL two seconds later.

use std::ffi::OsStr;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Ran {
    /// `None`: killed by a signal (ours, after the deadline, or another).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
}

impl Ran {
    /// stdout then stderr, line by line, for error details.
    pub fn lines(&self) -> Vec<String> {
        self.stdout
            .lines()
            .chain(self.stderr.lines())
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect()
    }
}

pub fn run(
    program: &OsStr,
    args: &[String],
    env: &[(&str, &str)],
    deadline: Duration,
) -> std::io::Result<Ran> {
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let started = Instant::now();
    let mut timed_out = false;
    let mut termed_at: Option<Instant> = None;
    let mut pause = Duration::from_millis(1);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() >= deadline {
            timed_out = true;
            match termed_at {
                None => {
                    // The child this function started, by its own pid.
                    let pid = child.id() as libc::pid_t;
                    // SAFETY: kill(2) with a pid we own and a valid signal.
                    unsafe { libc::kill(pid, libc::SIGTERM) };
                    termed_at = Some(Instant::now());
                }
                Some(t) if t.elapsed() > Duration::from_secs(2) => {
                    let _ = child.kill();
                }
                Some(_) => {}
            }
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    };
    Ok(Ran {
        code: status.code(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        timed_out,
    })
}

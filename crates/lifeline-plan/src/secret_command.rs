//! Running the programs that hand lifeline a secret: `password_command`, which prints the password,
//! and the KMS command, which wraps and unwraps a key slot's key. Both run with `sh -c` for a bounded
//! time, and fail with their exit status and what they said on stderr, never with what they printed
//! on stdout: that is the secret.

use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use lifeline_sources::command::{kill_tree, stderr_tail};

/// More than any key or password; a program printing more is not the one meant.
const STDOUT_LIMIT: u64 = 1 << 20;
/// Enough of stderr for an error message.
const STDERR_LIMIT: u64 = 64 << 10;
/// How often a running command is looked at: small against a KMS round trip.
const POLL: Duration = Duration::from_millis(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot run {what}: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
    #[error("{what} failed ({status}){}", stderr_tail(.stderr))]
    Failed {
        what: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error("{what} did not finish within {} and was killed{}", humantime::format_duration(*.timeout), stderr_tail(.stderr))]
    TimedOut {
        what: String,
        timeout: Duration,
        stderr: String,
    },
    #[error("{what} printed more than {STDOUT_LIMIT} bytes on stdout: it is not a command that prints a secret")]
    TooMuch { what: String },
}

/// A command to run: `what` names it in errors (`password command "..."`), `env` is added to the
/// inherited environment.
pub struct SecretCommand<'a> {
    pub what: String,
    pub command: &'a str,
    pub env: &'a [(&'a str, &'a str)],
    pub timeout: Duration,
}

impl SecretCommand<'_> {
    /// Runs the command with `input` on stdin (none: stdin is /dev/null) and returns its stdout.
    pub fn run(&self, input: Option<&[u8]>) -> Result<Vec<u8>, Error> {
        // Not a process group of its own: the daemon stops a job by killing the job's group, and
        // that must reach this command too. A timeout kills the command's process tree instead.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(self.command)
            .envs(self.env.iter().copied())
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| Error::Spawn {
                what: self.what.clone(),
                source,
            })?;
        // Each pipe has a thread of its own, so a command that writes before it has read all of
        // its input cannot deadlock with us.
        let writer = match (input, child.stdin.take()) {
            (Some(data), Some(mut pipe)) => {
                let data = data.to_vec();
                // A command that exits without reading its input closes the pipe: its exit
                // status says what went wrong, not the broken pipe.
                Some(thread::spawn(move || drop(pipe.write_all(&data))))
            }
            _ => None,
        };
        let stdout = child.stdout.take().map(|p| drain(p, STDOUT_LIMIT));
        let stderr = child.stderr.take().map(|p| drain(p, STDERR_LIMIT));
        let finished = wait(&mut child, self.timeout);
        if let Some(w) = writer {
            let _ = w.join();
        }
        let (stdout, overflow) = joined(stdout);
        let stderr = String::from_utf8_lossy(&joined(stderr).0).into_owned();
        let what = self.what.clone();
        let status = match finished {
            Ok(Some(status)) => status,
            Ok(None) => {
                return Err(Error::TimedOut {
                    what,
                    timeout: self.timeout,
                    stderr,
                })
            }
            Err(source) => return Err(Error::Spawn { what, source }),
        };
        if !status.success() {
            return Err(Error::Failed {
                what,
                status,
                stderr,
            });
        }
        if overflow {
            return Err(Error::TooMuch { what });
        }
        Ok(stdout)
    }
}

/// Reads up to `limit` bytes of `pipe` and discards the rest, so the command never blocks on a full
/// pipe; the flag says whether there was more.
fn drain(pipe: impl Read + Send + 'static, limit: u64) -> JoinHandle<(Vec<u8>, bool)> {
    thread::spawn(move || {
        let mut kept = Vec::new();
        let mut pipe = pipe;
        let _ = pipe.by_ref().take(limit).read_to_end(&mut kept);
        let rest = std::io::copy(&mut pipe, &mut std::io::sink()).unwrap_or(0);
        (kept, rest > 0)
    })
}

fn joined(reader: Option<JoinHandle<(Vec<u8>, bool)>>) -> (Vec<u8>, bool) {
    reader
        .and_then(|r| r.join().ok())
        .unwrap_or((Vec::new(), false))
}

/// The command's exit status, or `None` when it ran past `timeout` and was killed with everything
/// it started (so no grandchild keeps the pipes open).
fn wait(child: &mut Child, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if started.elapsed() >= timeout {
            kill_tree(child.id());
            child.wait()?;
            return Ok(None);
        }
        thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn command(cmd: &str, timeout: Duration) -> SecretCommand<'_> {
        SecretCommand {
            what: format!("test command {cmd:?}"),
            command: cmd,
            env: &[("LIFELINE_TEST_VALUE", "from env")],
            timeout,
        }
    }

    #[test]
    fn input_goes_to_stdin_and_stdout_comes_back_with_the_env_set() {
        let out = command(
            "printf '%s|' \"$LIFELINE_TEST_VALUE\"; cat",
            Duration::from_secs(30),
        )
        .run(Some(b"in\x00put"))
        .unwrap();
        assert_eq!(out, b"from env|in\x00put");
    }

    /// 4 MiB in and out: more than a pipe holds both ways, so a command that writes while it reads
    /// would deadlock with a caller that writes all input first.
    #[test]
    fn large_input_and_output_do_not_deadlock() {
        let input = vec![7u8; 4 << 20];
        let err = command("cat", Duration::from_secs(60))
            .run(Some(&input))
            .unwrap_err();
        assert!(
            matches!(err, Error::TooMuch { .. }),
            "4 MiB of output should be refused, got {err}"
        );
        let out = command("head -c 100000", Duration::from_secs(60))
            .run(Some(&input))
            .unwrap();
        assert_eq!(out.len(), 100_000);
    }

    #[test]
    fn failure_names_the_status_and_stderr_but_not_stdout() {
        let err = command(
            // Printed in two pieces, so the command line (which errors name) does not hold it.
            "printf 'SECRET-%s' ON-STDOUT; echo 'token not found' >&2; exit 3",
            Duration::from_secs(30),
        )
        .run(None)
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("exit status: 3"), "{text}");
        assert!(text.contains("token not found"), "{text}");
        assert!(text.contains("test command"), "{text}");
        assert!(!text.contains("SECRET-ON-STDOUT"), "{text}");
    }

    #[test]
    fn a_command_past_its_timeout_is_killed_with_its_children() {
        let marker = tempfile::tempdir().unwrap();
        let late = marker.path().join("late");
        let cmd = format!(
            "echo started >&2; (sleep 3; touch '{}') & sleep 30",
            late.display()
        );
        let started = Instant::now();
        let err = command(&cmd, Duration::from_millis(500))
            .run(None)
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        let text = err.to_string();
        assert!(matches!(err, Error::TimedOut { .. }), "{text}");
        assert!(
            text.contains("within 500ms") && text.contains("started"),
            "{text}"
        );
        std::thread::sleep(Duration::from_secs(4));
        assert!(
            !late.exists(),
            "the command's background child outlived the timeout"
        );
    }
}

//! Reading the repository password from a file, a command, or the terminal.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::options::KeySource;
use crate::secret_command::SecretCommand;

/// Long enough for a person at a pinentry (`pass`, gpg), short enough that a scheduled job whose
/// secrets manager hangs fails instead of waiting forever.
const PASSWORD_COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// A password held only as long as needed.
pub struct Password(Vec<u8>);

impl Password {
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    fn checked(bytes: Vec<u8>, origin: &str) -> anyhow::Result<Self> {
        if bytes.is_empty() {
            bail!("the password from {origin} is empty; an empty password protects nothing");
        }
        Ok(Password(bytes))
    }
}

fn first_line(bytes: &[u8]) -> Vec<u8> {
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    line.strip_suffix(b"\r").unwrap_or(line).to_vec()
}

pub fn from_file(path: &Path) -> anyhow::Result<Password> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read password file {}", path.display()))?;
    Password::checked(first_line(&bytes), &format!("file {}", path.display()))
}

fn from_command(cmd: &str) -> anyhow::Result<Password> {
    let stdout = SecretCommand {
        what: format!("password command {cmd:?}"),
        command: cmd,
        env: &[],
        timeout: PASSWORD_COMMAND_TIMEOUT,
    }
    .run(None)?;
    Password::checked(first_line(&stdout), &format!("command {cmd:?}"))
}

fn prompt(text: &str) -> anyhow::Result<Password> {
    let pw =
        rpassword::prompt_password(text).context("cannot read the password from the terminal")?;
    Password::checked(pw.into_bytes(), "the terminal")
}

fn no_source() -> anyhow::Error {
    anyhow::anyhow!(
        "no password given: set LIFELINE_PASSWORD_FILE or LIFELINE_PASSWORD_COMMAND, pass --password-file, \
         put `key = {{ password_file = \"...\" }}` under [repository] in --config, or run on a terminal to be asked"
    )
}

/// The password of an existing repository.
pub fn read(source: &KeySource) -> anyhow::Result<Password> {
    if let Some(path) = &source.password_file {
        return from_file(path);
    }
    if let Some(cmd) = &source.password_command {
        return from_command(cmd);
    }
    if std::io::stdin().is_terminal() {
        return prompt("repository password: ");
    }
    Err(no_source())
}

/// A password that is being set: from the given file, or asked twice on the terminal.
pub fn new_password(file: Option<&Path>, source: Option<&KeySource>) -> anyhow::Result<Password> {
    if let Some(path) = file {
        return from_file(path);
    }
    if let Some(source) =
        source.filter(|s| s.password_file.is_some() || s.password_command.is_some())
    {
        return read(source);
    }
    if !std::io::stdin().is_terminal() {
        return Err(no_source());
    }
    let first = prompt("new password: ")?;
    let again = prompt("repeat the new password: ")?;
    if first.bytes() != again.bytes() {
        bail!("the two passwords differ; nothing was changed");
    }
    Ok(first)
}

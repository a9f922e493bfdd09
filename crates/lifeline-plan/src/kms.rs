//! The KMS command of KMS key slots: an external program (a cloud KMS's CLI, Vault transit, a
//! PKCS#11 tool) that wraps and unwraps a slot's key-encryption key, so that key never touches
//! lifeline's disk in the clear (format.md §3.3). lifeline runs only the command it is given
//! (`--kms-command`), never one stored in the repository: a repository must not be able to make its
//! reader run a program.

use std::time::Duration;

use anyhow::bail;
use lifeline_repo::crypto::Kms;
use lifeline_repo::Error;

use crate::secret_command::SecretCommand;

/// Tells the command which way to go: `wrap` or `unwrap` (format.md §3.3).
pub const OPERATION_VAR: &str = "LIFELINE_KMS_OPERATION";
/// A KMS is a network round trip or an HSM operation: seconds at worst. A command that hangs
/// (an unreachable endpoint, a prompt nobody answers) fails the open instead of stalling a job.
const TIMEOUT: Duration = Duration::from_secs(60);

/// A shell command that wraps (stdin: the 32-byte key; stdout: the blob) and unwraps (stdin: the
/// blob; stdout: the key), told which by `LIFELINE_KMS_OPERATION`. Raw bytes both ways.
#[derive(Debug, Clone)]
pub struct KmsCommand {
    command: String,
    label: String,
}

impl KmsCommand {
    /// `label` is what `key list` shows for the slots it wraps; by default the command's program
    /// name, because the whole command line may hold what should not be stored (a token, a path).
    pub fn new(command: &str, label: Option<&str>) -> anyhow::Result<Self> {
        if command.trim().is_empty() {
            bail!("the KMS command is empty: give the command that wraps and unwraps keys (--kms-command)");
        }
        let label = match label.map(str::trim) {
            Some("") => {
                bail!("the KMS label is empty: give --kms-label some text, or leave it out")
            }
            Some(label) => label.to_string(),
            None => default_label(command),
        };
        Ok(KmsCommand {
            command: command.to_string(),
            label,
        })
    }

    fn run(&self, operation: &str, input: &[u8]) -> lifeline_repo::Result<Vec<u8>> {
        let what = format!("KMS command {:?} ({operation})", self.command);
        let out = SecretCommand {
            what: what.clone(),
            command: &self.command,
            env: &[(OPERATION_VAR, operation)],
            timeout: TIMEOUT,
        }
        .run(Some(input))
        .map_err(|e| Error::Kms(e.to_string()))?;
        if out.is_empty() {
            return Err(Error::Kms(format!(
                "{what} exited 0 but printed nothing on stdout: it must print the result as raw bytes (docs/keys.md)"
            )));
        }
        Ok(out)
    }
}

impl Kms for KmsCommand {
    fn wrap(&self, kek: &[u8; 32]) -> lifeline_repo::Result<Vec<u8>> {
        self.run("wrap", kek)
    }

    fn unwrap(&self, wrapped: &[u8]) -> lifeline_repo::Result<Vec<u8>> {
        self.run("unwrap", wrapped)
    }

    fn label(&self) -> String {
        self.label.clone()
    }
}

/// The program a command line runs, without its directory: the first word that is not a leading
/// `NAME=value` assignment, unquoted. `SOFTHSM2_CONF='/x/softhsm2.conf' '/y/kms-pkcs11.sh'` →
/// `kms-pkcs11.sh`.
fn default_label(command: &str) -> String {
    let program = command
        .split_whitespace()
        .map(|word| word.trim_matches(|c| c == '\'' || c == '"'))
        .find(|word| !is_assignment(word))
        .unwrap_or_default();
    match program.rsplit('/').next() {
        Some(name) if !name.is_empty() => name.to_string(),
        _ => "kms command".to_string(),
    }
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_default_label_is_the_program_name() {
        assert_eq!(
            default_label("SOFTHSM2_CONF='/x/softhsm2.conf' '/y/scripts/kms-pkcs11.sh'"),
            "kms-pkcs11.sh"
        );
        assert_eq!(
            default_label("VAULT_TOKEN=s.secret /usr/local/bin/lifeline-vault-transit lifeline"),
            "lifeline-vault-transit"
        );
        assert_eq!(default_label("aws-kms-wrap --key alias/x"), "aws-kms-wrap");
        assert_eq!(default_label("A=1 B=2"), "kms command");
    }

    #[test]
    fn an_empty_command_or_label_is_refused() {
        let err = KmsCommand::new("  ", None).unwrap_err().to_string();
        assert!(err.contains("--kms-command"), "{err}");
        let err = KmsCommand::new("x", Some(" ")).unwrap_err().to_string();
        assert!(err.contains("--kms-label"), "{err}");
        assert_eq!(
            KmsCommand::new("x", Some(" HSM 1 ")).unwrap().label(),
            "HSM 1"
        );
    }

    /// What the command is told and given: the operation in the environment, the bytes on stdin.
    #[test]
    fn the_operation_comes_in_the_environment_and_the_input_on_stdin() {
        let kms = KmsCommand::new("printf '%s:' \"$LIFELINE_KMS_OPERATION\"; cat", None).unwrap();
        assert_eq!(kms.wrap(&[1; 32]).unwrap()[..5], *b"wrap:");
        assert_eq!(kms.unwrap(b"blob").unwrap(), b"unwrap:blob");
    }

    #[test]
    fn a_failing_or_silent_command_is_a_kms_error_naming_it() {
        let kms = KmsCommand::new("echo 'HSM offline' >&2; exit 1", None).unwrap();
        match kms.unwrap(b"blob") {
            Err(Error::Kms(text)) => {
                assert!(
                    text.contains("(unwrap) failed (exit status: 1): HSM offline"),
                    "{text}"
                )
            }
            other => panic!("expected a KMS error, got {:?}", other.map(|_| ())),
        }
        let kms = KmsCommand::new("cat >/dev/null", None).unwrap();
        match kms.wrap(&[0; 32]) {
            Err(Error::Kms(text)) => assert!(text.contains("printed nothing"), "{text}"),
            other => panic!("expected a KMS error, got {:?}", other.map(|_| ())),
        }
    }
}

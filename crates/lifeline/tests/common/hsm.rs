//! Real SoftHSM2 tokens for the end-to-end tests of KMS key slots.
//!
//! `scripts/softhsm.sh token DIR` makes a token store with one RSA-3072 key pair whose private key
//! never leaves the token, and `scripts/kms-pkcs11.sh` is the KMS command that wraps to it and
//! unwraps inside it. SoftHSM2 and pkcs11-tool are Debian's, installed by `scripts/softhsm.sh
//! install` (scripts/test.sh does it). Without them the tests fail: they never skip.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{run, Out};

/// The repository's `scripts/` folder.
pub fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts")
}

/// Quoted for `sh -c`, as scripts/softhsm.sh quotes the command it prints.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A SoftHSM2 token store in a folder of a test's sandbox.
pub struct Token {
    pub dir: PathBuf,
    /// The KMS command (`--kms-command`): scripts/kms-pkcs11.sh on this token store.
    pub command: String,
}

impl Token {
    /// A new token store in `dir`, which must not hold one.
    #[track_caller]
    pub fn create(dir: &Path) -> Token {
        let out = run(
            Command::new(scripts().join("softhsm.sh"))
                .arg("token")
                .arg(dir),
            None,
        );
        assert!(
            out.status.success(),
            "cannot make a SoftHSM2 token: SoftHSM2 is missing or broken; install it with \
             `scripts/softhsm.sh install` (scripts/test.sh does it)\n{}",
            out.describe()
        );
        let conf = dir.join("softhsm2.conf");
        assert!(conf.is_file(), "softhsm.sh made no {}", conf.display());
        let script = scripts().join("kms-pkcs11.sh");
        let command = format!(
            "SOFTHSM2_CONF={} {}",
            shell_quote(&conf.display().to_string()),
            shell_quote(&script.display().to_string())
        );
        Token {
            dir: dir.to_path_buf(),
            command,
        }
    }

    /// Runs the KMS command by hand: `operation` is `wrap` or `unwrap`.
    #[track_caller]
    pub fn kms(&self, operation: &str, input: &[u8]) -> Out {
        run(
            Command::new("sh")
                .arg("-c")
                .arg(&self.command)
                .env("LIFELINE_KMS_OPERATION", operation),
            Some(input),
        )
    }
}

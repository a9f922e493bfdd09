//! faultfs (`scripts/faultfs.py`), a pass-through FUSE file system that makes chosen files fail to
//! read part-way with EIO, as a failing disk does. Needs `scripts/faultfs.sh install` and
//! `eval "$(scripts/faultfs.sh env)"`; without them the tests that mount it fail saying so.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// `root` served at `mountpoint` (to every user: PostgreSQL runs as its own); unmounted when dropped.
pub struct FaultFs {
    mountpoint: PathBuf,
    control: PathBuf,
    log: PathBuf,
    daemon: Child,
}

impl FaultFs {
    /// Mounts `root` on `mountpoint` (an empty directory); the control file lives beside the
    /// mountpoint, outside what is served.
    #[track_caller]
    pub fn mount(root: &Path, mountpoint: &Path) -> FaultFs {
        let python = std::env::var_os("LIFELINE_FAULTFS_PYTHON").unwrap_or_else(|| {
            panic!(
                "LIFELINE_FAULTFS_PYTHON is not set: run scripts/faultfs.sh install, then \
                 eval \"$(scripts/faultfs.sh env)\""
            )
        });
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/faultfs.py");
        let name = mountpoint.file_name().unwrap().to_string_lossy();
        let control = mountpoint.with_file_name(format!("{name}.faults"));
        let log = mountpoint.with_file_name(format!("{name}.faultfs.log"));
        let daemon = Command::new(&python)
            .arg(&script)
            .args([root, mountpoint, &control])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", Path::new(&python).display()));
        let mut fs = FaultFs {
            mountpoint: mountpoint.to_path_buf(),
            control,
            log,
            daemon,
        };
        fs.wait_mounted();
        fs
    }

    /// A mount shows as a new device at the mountpoint.
    fn wait_mounted(&mut self) {
        let parent_dev = dev(self.mountpoint.parent().unwrap());
        let deadline = Instant::now() + Duration::from_secs(20);
        while dev(&self.mountpoint) == parent_dev {
            let exited = self.daemon.try_wait().unwrap();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "faultfs did not mount {} ({exited:?}): {}",
                self.mountpoint.display(),
                fs::read_to_string(&self.log).unwrap_or_default()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Files opened from now on at `rel` (relative to the root) read `bytes` bytes, then fail with EIO.
    pub fn fail_after(&self, rel: &str, bytes: u64) {
        let staged = self.control.with_extension("new");
        fs::write(&staged, format!("{bytes} {rel}\n")).unwrap();
        // A new file (a new inode) is noticed by the daemon even within one mtime tick.
        fs::rename(&staged, &self.control).unwrap();
    }

    /// Files opened from now on read whole again.
    pub fn heal(&self) {
        fs::remove_file(&self.control).unwrap();
    }
}

fn dev(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .dev()
}

impl Drop for FaultFs {
    fn drop(&mut self) {
        // Lazily, so a test that failed with a file still open does not leave the mount behind.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.mountpoint)
            .status();
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

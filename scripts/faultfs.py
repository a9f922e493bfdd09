"""A pass-through FUSE file system that makes chosen files fail to read part-way, as a failing disk
does: the tests' source of an EIO in the middle of a file (this kernel has no device-mapper, so no
dm-error). Everything else passes through to ROOT unchanged, so a PostgreSQL tablespace can live on it.

    python faultfs.py ROOT MOUNTPOINT CONTROL

CONTROL is a text file of lines `BYTES PATH` (PATH relative to ROOT): a file opened while its line is
there reads its first BYTES bytes and then fails every read with EIO. The file is re-read when its
mtime or inode changes, so a test arms a fault by rewriting it; files already open keep what they opened with.
Runs in the foreground until unmounted (`fusermount -u MOUNTPOINT`). Started by tests/common/faultfs.rs
with the Python of `scripts/faultfs.sh env`.
"""

import errno
import os
import sys
import threading

from fuse import FUSE, FuseOSError, Operations, fuse_get_context


class FaultFs(Operations):
    def __init__(self, root, control):
        self.root = os.path.realpath(root)
        self.control = control
        self.lock = threading.Lock()
        self.control_mtime = None
        self.armed = {}
        # File handle -> bytes it may read before failing; only for files opened while armed.
        self.failing = {}

    def _real(self, path):
        return os.path.join(self.root, path.lstrip("/"))

    def _armed_limit(self, path):
        try:
            st = os.stat(self.control)
            mtime = (st.st_mtime_ns, st.st_ino)
        except FileNotFoundError:
            mtime = None
        with self.lock:
            if mtime != self.control_mtime:
                self.control_mtime = mtime
                self.armed = {}
                if mtime is not None:
                    with open(self.control) as f:
                        for line in f:
                            if line.strip():
                                size, rel = line.rstrip("\n").split(" ", 1)
                                self.armed[rel.lstrip("/")] = int(size)
            return self.armed.get(path.lstrip("/"))

    # Files and directories made through the mount belong to the caller, as on a real disk: the
    # daemon runs as root, PostgreSQL as its own user.
    def _own(self, real):
        uid, gid, _ = fuse_get_context()
        os.lchown(real, uid, gid)

    def getattr(self, path, fh=None):
        st = os.lstat(self._real(path))
        keys = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_atime", "st_mtime",
                "st_ctime", "st_ino", "st_dev", "st_blocks")
        attrs = {k: getattr(st, k) for k in keys}
        # Nanosecond times: lifeline compares them to tell unchanged files.
        for k in ("st_atime", "st_mtime", "st_ctime"):
            attrs[k] = getattr(st, k + "_ns") / 1e9
        return attrs

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._real(path))

    def readlink(self, path):
        return os.readlink(self._real(path))

    def access(self, path, mode):
        if not os.access(self._real(path), mode):
            raise FuseOSError(errno.EACCES)

    def statfs(self, path):
        st = os.statvfs(self._real(path))
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files",
                "f_flag", "f_frsize", "f_namemax")
        return {k: getattr(st, k) for k in keys}

    def chmod(self, path, mode):
        os.chmod(self._real(path), mode)

    def chown(self, path, uid, gid):
        os.lchown(self._real(path), uid, gid)

    def utimens(self, path, times=None):
        os.utime(self._real(path), times, follow_symlinks=False)

    def mkdir(self, path, mode):
        real = self._real(path)
        os.mkdir(real, mode)
        self._own(real)

    def rmdir(self, path):
        os.rmdir(self._real(path))

    def unlink(self, path):
        os.unlink(self._real(path))

    def symlink(self, target, source):
        real = self._real(target)
        os.symlink(source, real)
        self._own(real)

    def link(self, target, source):
        os.link(self._real(source), self._real(target))

    def rename(self, old, new):
        os.rename(self._real(old), self._real(new))

    def truncate(self, path, length, fh=None):
        if fh is None:
            os.truncate(self._real(path), length)
        else:
            os.ftruncate(fh, length)

    def open(self, path, flags):
        fh = os.open(self._real(path), flags)
        limit = self._armed_limit(path)
        if limit is not None:
            with self.lock:
                self.failing[fh] = limit
        return fh

    def create(self, path, mode, fi=None):
        real = self._real(path)
        fh = os.open(real, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        self._own(real)
        return fh

    def read(self, path, size, offset, fh):
        limit = self.failing.get(fh)
        if limit is not None and offset + size > limit:
            raise FuseOSError(errno.EIO)
        return os.pread(fh, size, offset)

    def write(self, path, data, offset, fh):
        return os.pwrite(fh, data, offset)

    def flush(self, path, fh):
        return 0

    def fsync(self, path, datasync, fh):
        if datasync:
            os.fdatasync(fh)
        else:
            os.fsync(fh)
        return 0

    def release(self, path, fh):
        with self.lock:
            self.failing.pop(fh, None)
        os.close(fh)
        return 0


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: faultfs.py ROOT MOUNTPOINT CONTROL")
    root, mountpoint, control = sys.argv[1:]
    # allow_other: PostgreSQL and lifeline run as the postgres user, the daemon as root.
    # default_permissions: the kernel checks modes and owners as a real file system does.
    FUSE(FaultFs(root, control), mountpoint, foreground=True, nothreads=False,
         allow_other=True, default_permissions=True, use_ino=True)


if __name__ == "__main__":
    main()

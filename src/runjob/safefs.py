"""Files and directories runjob keeps, made so that another local user cannot steer them.

runjob often runs as root from cron. A symlink planted where runjob expects its own file
would make it overwrite or chmod any file, and a state dir others can write lets them plant
one. So every file runjob creates or writes is opened with O_NOFOLLOW (new ones O_EXCL,
mode 0600 unless the caller says otherwise), temp files get an unpredictable name, and a
directory runjob keeps state in must be owned by the running user or root and not be
writable by group or others. The group is not trusted: a group-writable state dir is
refused like a world-writable one. Anything else is exit 125 with a message naming it.
"""

from __future__ import annotations

import os
import stat

from runjob.errors import InternalError

FILE_MODE = 0o600
DIR_MODE = 0o700

_trusted: set[str] = set()  # directories checked in this process (runjob checks each once)


def symlink_error(path: str) -> InternalError:
    return InternalError(f"{path} is a symlink; runjob does not follow symlinks to its own files (remove it)")


def _open_error(path: str, e: OSError) -> InternalError:
    import errno

    if e.errno == errno.ELOOP:
        return symlink_error(path)
    return InternalError(f"cannot open {path}: {e.strerror}")


def open_private(path: str, flags: int, mode: int = FILE_MODE) -> int:
    """os.open that never follows a symlink; with O_CREAT a missing file is created O_EXCL
    with `mode`, and an existing one wider than `mode` (made by an older runjob) is narrowed
    to it. Only regular files. InternalError if not."""
    flags |= os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        for _ in range(10):  # a file deleted between the two opens: try again
            if flags & os.O_CREAT:
                try:
                    return os.open(path, flags | os.O_EXCL, mode)
                except FileExistsError:
                    pass
            try:
                fd = os.open(path, flags & ~os.O_CREAT)
                break
            except FileNotFoundError:
                if not flags & os.O_CREAT:
                    raise
        else:
            raise InternalError(f"cannot open {path}: it keeps disappearing")
    except OSError as e:
        raise _open_error(path, e) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise InternalError(f"{path} is not a regular file; runjob refuses to use it")
    if flags & os.O_CREAT and st.st_mode & 0o777 & ~mode and st.st_uid == os.geteuid():
        os.fchmod(fd, st.st_mode & 0o777 & mode)
    return fd


def dir_problem(path: str, st: os.stat_result) -> str | None:
    """Why a directory runjob keeps files in cannot be trusted, or None."""
    if not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a directory"
    if st.st_uid not in (os.geteuid(), 0):
        return f"{path} is owned by uid {st.st_uid}, neither the running user nor root; runjob refuses it"
    if st.st_mode & 0o022:
        return (
            f"{path} is writable by group or others (mode {st.st_mode & 0o7777:04o}); "
            f"runjob refuses it (chmod go-w {path})"
        )
    return None


def ensure_dir(path: str, top: bool = False) -> None:
    """`path` as a directory runjob may keep state in, created 0700 if missing.

    `top` (the state dir itself) may be reached through a symlink, whose target is checked;
    a directory inside it (locks/) may not be a symlink at all."""
    if path in _trusted:
        return
    try:
        st = _make_dir(path, top)
    except OSError as e:
        raise InternalError(f"cannot create directory {path}: {e.strerror}") from None
    if not top and stat.S_ISLNK(st.st_mode):
        raise symlink_error(path)
    problem = dir_problem(path, st)
    if problem:
        raise InternalError(problem)
    _trusted.add(path)


def forget(path: str) -> None:
    """Check `path` again next time (a cleaner may have removed it since)."""
    _trusted.discard(path)


def _make_dir(path: str, top: bool) -> os.stat_result:
    try:
        return os.stat(path) if top else os.lstat(path)
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)  # the parents are the admin's business
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        pass
    return os.stat(path) if top else os.lstat(path)


def ensure_state_dir(state_dir: str, *inside: str) -> str:
    """The state dir and a directory inside it, both checked (or created 0700); the inner path."""
    ensure_dir(state_dir, top=True)
    path = state_dir
    for part in inside:
        path = os.path.join(path, part)
        ensure_dir(path)
    return path


def replace(path: str, data: bytes, mode: int = FILE_MODE, durable: bool = False, keep_mode: bool = True) -> None:
    """Write `data` to a temp file beside `path` and rename it over `path`: readers see the
    old content or the new, never a part of it.

    The temp file has an unpredictable name and is created O_EXCL|O_NOFOLLOW with its final
    mode (an existing file's mode if `keep_mode`, else `mode`), so its content is never exposed wider than
    the file's. A symlink at `path` is refused (InternalError), never replaced by a file.
    `durable` fsyncs the data before the rename. Other failures raise OSError.
    """
    try:
        old: os.stat_result | None = os.lstat(path)
    except FileNotFoundError:
        old = None
    if old is not None and stat.S_ISLNK(old.st_mode):
        raise symlink_error(path)
    final = old.st_mode & 0o7777 if old is not None and keep_mode else mode
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f".{name}.{os.urandom(8).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, final & 0o777)
    try:
        _keep_identity(fd, old if keep_mode else None, final)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _keep_identity(fd: int, old: os.stat_result | None, final: int) -> None:
    """Before any data: the old file's owner (root can give it back) and its exact mode (the
    umask may have narrowed the create mode; widening it now exposes nothing yet)."""
    if old is None:
        return  # a new file (or a mode set anew): the create mode, under the umask, is final
    mine = os.fstat(fd)
    if (mine.st_uid, mine.st_gid) != (old.st_uid, old.st_gid):
        try:
            os.fchown(fd, old.st_uid, old.st_gid)
        except PermissionError:
            pass  # not root: the file becomes ours, as any editor would make it
    os.fchmod(fd, final)

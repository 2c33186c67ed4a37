//! Atomic file replacement: write a temporary file next to the destination,
//! then rename it over the destination, so readers never see a half-written file.
//! A symbolic link is followed (its target is replaced, the link stays); a device or pipe
//! (`/dev/stdout`, a FIFO) is written in place, since it cannot be replaced.

use std::cell::RefCell;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::DataError;

/// Distinguishes temporary files created by concurrent writers of one process.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Removes the temporary file when dropped, unless it has been renamed away.
/// This also cleans up if the writer closure panics.
struct TempGuard {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

thread_local! {
    /// The temporaries written under [`replace_together`] on this thread, with their targets:
    /// renamed when it ends well, removed (by their guards) otherwise. `None` outside it.
    static STAGED: RefCell<Option<Vec<(TempGuard, PathBuf)>>> = const { RefCell::new(None) };
}

/// Renames the written temporary of `guard` over `target` now, or, inside
/// [`replace_together`], when it ends well.
fn commit(guard: TempGuard, target: &Path) -> io::Result<()> {
    let now = STAGED.with(|staged| match staged.borrow_mut().as_mut() {
        Some(list) => {
            list.push((guard, target.to_path_buf()));
            None
        }
        None => Some(guard),
    });
    if let Some(mut guard) = now {
        fs::rename(&guard.path, target)?;
        guard.armed = false;
    }
    Ok(())
}

/// Ends a [`replace_together`] scope when dropped (a panic included): its temporaries that
/// were not renamed are removed.
struct Staging;

impl Drop for Staging {
    fn drop(&mut self) {
        drop(STAGED.with(|staged| staged.borrow_mut().take()));
    }
}

/// Runs `f`, whose writes through [`write_atomic`] and [`write_atomic_path`] replace their
/// files together: each is written in full to its temporary, and only when `f` has succeeded
/// are all of them renamed over their targets, one right after the other. A command with
/// outputs that belong together (samples and their labels) thus never leaves one new and one
/// old file after an error; only a kill in the microseconds between the renames could. Devices
/// and pipes are written in place as they come. Nested calls join the outermost.
///
/// # Errors
/// `f`'s error (no file is replaced), or [`DataError::Io`] naming the target whose rename
/// failed (the targets before it are replaced, the ones after it are not).
pub fn replace_together<T, E: From<DataError>>(f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    let outermost = STAGED.with(|staged| {
        let mut staged = staged.borrow_mut();
        staged.is_none() && {
            *staged = Some(Vec::new());
            true
        }
    });
    if !outermost {
        return f();
    }
    let scope = Staging;
    let value = f()?;
    let written = STAGED
        .with(|staged| staged.borrow_mut().take())
        .unwrap_or_default();
    drop(scope);
    for (mut guard, target) in written {
        fs::rename(&guard.path, &target).map_err(|e| write_err(&target, e))?;
        guard.armed = false;
    }
    Ok(value)
}

/// Creates a fresh temporary file `.<name>.tmp-<pid>-<random><suffix>` in `dir`, exclusively
/// (`O_CREAT | O_EXCL`: an existing file or a planted link at that name is never opened). The
/// random part (from std's per-process random hash keys) makes the names unpredictable, so
/// another user cannot occupy them in advance.
fn create_temp(dir: &Path, name: &std::ffi::OsStr, suffix: &str) -> io::Result<(File, PathBuf)> {
    create_temp_mode(dir, name, suffix, 0o666)
}

/// As [`create_temp`], created with permission bits `mode` (less the umask) on Unix: `0o600`
/// for a file only its owner may read, from its first byte on.
fn create_temp_mode(
    dir: &Path,
    name: &std::ffi::OsStr,
    suffix: &str,
    mode: u32,
) -> io::Result<(File, PathBuf)> {
    use std::hash::{BuildHasher, Hasher};
    let pid = std::process::id();
    let keys = std::collections::hash_map::RandomState::new();
    let mut last_err = None;
    for _ in 0..100 {
        let mut h = keys.build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        let n = h.finish();
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".tmp-{pid}-{n:016x}{suffix}"));
        let tmp_path = dir.join(tmp_name);
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
        #[cfg(not(unix))]
        let _ = mode;
        match options.open(&tmp_path) {
            Ok(file) => return Ok((file, tmp_path)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("could not create a temporary file")))
}

/// Writes `path` atomically: `f` writes into a buffered temporary file in the
/// same directory (named `.<file name>.tmp-<pid>-<n>`), which is renamed over
/// `path` only after `f` succeeded and the data was flushed.
///
/// On any error (or a panic in `f`) the temporary file is removed and `path`
/// is left untouched. The data is not fsync'ed.
///
/// # Errors
/// [`DataError::Io`] naming `path` when the temporary file cannot be created
/// (e.g. the directory does not exist), when `f` or the flush fails, or when
/// the rename fails.
pub fn write_atomic(
    path: &Path,
    f: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), DataError> {
    write_atomic_mode(path, 0o666, f)
}

/// As [`write_atomic`] for a secret (a token): the temporary file is created readable and
/// writable by its owner only (mode `0600` on Unix) before any byte is written, and keeps
/// that mode when it is renamed over `path`.
///
/// # Errors
/// As [`write_atomic`].
pub fn write_atomic_private(
    path: &Path,
    f: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), DataError> {
    write_atomic_mode(path, 0o600, f)
}

/// [`write_atomic`] with the temporary file created with permission bits `mode`.
fn write_atomic_mode(
    path: &Path,
    mode: u32,
    f: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), DataError> {
    let io_err = |source: io::Error| write_err(path, source);
    let target = match destination(path) {
        Destination::Stream => {
            let mut writer =
                BufWriter::new(OpenOptions::new().write(true).open(path).map_err(io_err)?);
            f(&mut writer).map_err(io_err)?;
            return writer.flush().map_err(io_err);
        }
        Destination::File(target) => target,
    };
    let path = target.as_path();
    let (dir, name) = dir_and_name(path)?;
    let (file, tmp_path) = create_temp_mode(dir, name, "", mode).map_err(io_err)?;
    let guard = TempGuard {
        path: tmp_path,
        armed: true,
    };
    let mut writer = BufWriter::new(file);
    f(&mut writer).map_err(io_err)?;
    let file = writer.into_inner().map_err(|e| io_err(e.into_error()))?;
    drop(file);
    commit(guard, path).map_err(io_err)
}

/// Where a write to a path goes.
enum Destination {
    /// A regular file (new or existing) at this path: written by temporary file and rename.
    /// For a symbolic link to a file this is the link's target, so the link stays a link.
    File(PathBuf),
    /// An existing device, pipe or socket (`/dev/stdout`, a FIFO): written in place, since
    /// renaming a file over it would replace it.
    Stream,
}

/// Classifies `path` (see [`Destination`]); a path that does not exist, or whose type cannot
/// be read, is a new regular file.
fn destination(path: &Path) -> Destination {
    match fs::metadata(path) {
        Ok(m) if !m.is_file() && !m.is_dir() => Destination::Stream,
        Ok(_) if fs::symlink_metadata(path).is_ok_and(|l| l.file_type().is_symlink()) => {
            Destination::File(fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()))
        }
        _ => Destination::File(path.to_path_buf()),
    }
}

/// An I/O error while writing `path` (a missing directory included: not "file not found").
fn write_err(path: &Path, source: io::Error) -> DataError {
    DataError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The directory (`.` for a bare file name) and the file name of `path`.
fn dir_and_name(path: &Path) -> Result<(&Path, &std::ffi::OsStr), DataError> {
    let name = path.file_name().ok_or_else(|| {
        write_err(
            path,
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the path does not end in a file name",
            ),
        )
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Ok((dir, name))
}

/// Writes `path` atomically with a writer that opens the file itself (an image encoder that
/// picks its format from the extension): `write` gets a fresh temporary path next to `path`,
/// `.<file name>.tmp-<pid>-<n>.<extension>`, which is renamed over `path` only after `write`
/// succeeded.
///
/// On any error (or a panic in `write`) the temporary file is removed and `path` is left
/// untouched.
///
/// # Errors
/// `write`'s own error, or [`DataError::Io`] naming `path` (converted into `E`) when `path`
/// has no file name, the temporary file cannot be created or the rename fails.
pub fn write_atomic_path<E: From<DataError>>(
    path: &Path,
    extension: &str,
    write: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), E> {
    let target = match destination(path) {
        Destination::Stream => {
            // The writer needs a path with the extension: write a temporary file, then copy it
            // into the stream.
            let dir = std::env::temp_dir();
            let (file, tmp_path) = create_temp(&dir, "mixburn".as_ref(), &format!(".{extension}"))
                .map_err(|e| write_err(path, e))?;
            drop(file);
            let guard = TempGuard {
                path: tmp_path,
                armed: true,
            };
            write(&guard.path)?;
            let bytes = fs::read(&guard.path).map_err(|e| write_err(path, e))?;
            let mut out = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| write_err(path, e))?;
            out.write_all(&bytes).map_err(|e| write_err(path, e))?;
            return Ok(());
        }
        Destination::File(target) => target,
    };
    let path = target.as_path();
    let (dir, name) = dir_and_name(path)?;
    let (file, tmp_path) =
        create_temp(dir, name, &format!(".{extension}")).map_err(|e| write_err(path, e))?;
    drop(file);
    let guard = TempGuard {
        path: tmp_path,
        armed: true,
    };
    write(&guard.path)?;
    commit(guard, path).map_err(|e| write_err(path, e))?;
    Ok(())
}

/// Checks, before any work or any write, that each of `paths` can be written by
/// [`write_atomic`]: its directory exists and takes a new file (a temporary is created and
/// removed), it is not a directory, and no path is given twice. A command with several outputs
/// calls this first, so that a bad last output does not leave the earlier ones replaced.
///
/// # Errors
/// [`DataError::Io`] naming the first path that cannot be written, and why.
pub fn check_outputs(paths: &[&Path]) -> Result<(), DataError> {
    for (i, path) in paths.iter().enumerate() {
        let invalid = |msg: &str| write_err(path, io::Error::new(io::ErrorKind::InvalidInput, msg));
        if paths[..i].iter().any(|p| p == path) {
            return Err(invalid("the same path is given for two outputs"));
        }
        if fs::metadata(path).is_ok_and(|m| m.is_dir()) {
            return Err(invalid("is a directory; give a file path"));
        }
        let target = match destination(path) {
            Destination::Stream => continue,
            Destination::File(target) => target,
        };
        let (dir, name) = dir_and_name(&target)?;
        let (file, tmp_path) = create_temp(dir, name, "").map_err(|e| write_err(path, e))?;
        drop(file);
        let _ = fs::remove_file(tmp_path);
    }
    Ok(())
}

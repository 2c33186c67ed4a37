//! A directory only its owner can enter, for secrets (a server's token file): created with
//! mode `0700`, and an existing one accepted only when it is a real directory (not a link),
//! owned by this process's user and closed to everyone else. Files in it are written by
//! [`crate::write_atomic_private`].

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::DataError;

/// Creates `dir` (its parents as needed) readable by its owner only, or checks that an
/// existing `dir` is one: a directory, not a symbolic link, owned by the effective user, with
/// no permission for group or others. Returns `dir`.
///
/// # Errors
/// [`DataError::Io`] naming `dir` when it cannot be created, or when it exists but is a link,
/// not a directory, another user's, or open to others (the message says which, and how to fix
/// it).
pub fn private_dir(dir: &Path) -> Result<PathBuf, DataError> {
    let err = |kind: io::ErrorKind, msg: String| DataError::Io {
        path: dir.to_path_buf(),
        source: io::Error::new(kind, msg),
    };
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|e| DataError::Io {
            path: parent.to_path_buf(),
            source: e,
        })?;
    }
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    match builder.create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(DataError::Io {
                path: dir.to_path_buf(),
                source: e,
            })
        }
    }
    let meta = fs::symlink_metadata(dir).map_err(|e| DataError::Io {
        path: dir.to_path_buf(),
        source: e,
    })?;
    if meta.file_type().is_symlink() || !meta.is_dir() {
        return Err(err(
            io::ErrorKind::InvalidInput,
            "is not a directory (a link or a file): remove it, and it is created again \
             with mode 0700"
                .into(),
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // SAFETY: `geteuid` has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        if meta.uid() != euid {
            return Err(err(
                io::ErrorKind::PermissionDenied,
                format!(
                    "belongs to user {}, not to this user ({euid}): a secret written there \
                     could be read by its owner",
                    meta.uid()
                ),
            ));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(err(
                io::ErrorKind::PermissionDenied,
                format!(
                    "is open to other users (mode {:o}): run `chmod 700` on it",
                    meta.mode() & 0o777
                ),
            ));
        }
    }
    Ok(dir.to_path_buf())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_private_dir_is_created_closed_to_others_and_an_open_one_or_a_link_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/mixburn");
        private_dir(&dir).unwrap();
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // Again: accepted as it is.
        private_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let e = private_dir(&dir).unwrap_err().to_string();
        assert!(
            e.contains("open to other users") && e.contains("chmod 700"),
            "{e}"
        );
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let e = private_dir(&link).unwrap_err().to_string();
        assert!(e.contains("not a directory"), "{e}");
    }

    #[test]
    fn a_private_write_is_readable_by_its_owner_only() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("token");
        crate::write_atomic_private(&path, |w| w.write_all(b"secret\n")).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"secret\n");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Replacing a world-readable file leaves a private one.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        crate::write_atomic_private(&path, |w| w.write_all(b"other\n")).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}

//! Opening input files, which are untrusted: only regular files are read (a FIFO without a
//! writer would block forever, a link to `/dev/zero` would be read until memory runs out), and
//! the file's size is known before anything is allocated for it.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use crate::error::DataError;

/// What a non-regular file is, for the message.
fn kind(ft: std::fs::FileType) -> &'static str {
    if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO (named pipe)"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Opens `path` (links followed) for reading if it is a regular file, returning it with its
/// size in bytes. The open does not block (`O_NONBLOCK`, so a FIFO is refused instead of
/// waited on) and the check is made on the opened file, not on the name.
///
/// # Errors
/// [`DataError::NotFound`] / [`DataError::Io`] from the system, [`DataError::Format`] for a
/// directory, FIFO, device or socket.
pub fn open_input(path: &Path) -> Result<(File, u64), DataError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| DataError::io(path, e))?;
    let meta = file.metadata().map_err(|e| DataError::io(path, e))?;
    if !meta.file_type().is_file() {
        return Err(DataError::format(
            path,
            format!(
                "is {}, not a regular file; give the path of a data file",
                kind(meta.file_type())
            ),
        ));
    }
    Ok((file, meta.len()))
}

/// Reads a whole regular file (see [`open_input`]), allocating its size once; a file that
/// grows while it is read is refused rather than followed.
///
/// # Errors
/// As [`open_input`], and [`DataError::Io`] for a failed read.
pub fn read_input(path: &Path) -> Result<Vec<u8>, DataError> {
    let (file, len) = open_input(path)?;
    let len = usize::try_from(len).map_err(|_| {
        DataError::format(
            path,
            format!("is {len} bytes, more than this machine can address"),
        )
    })?;
    let mut bytes = Vec::new();
    bytes.try_reserve_exact(len).map_err(|_| {
        DataError::format(path, format!("is {len} bytes, more than fits in memory"))
    })?;
    let mut limited = file.take(len as u64 + 1);
    limited
        .read_to_end(&mut bytes)
        .map_err(|e| DataError::io(path, e))?;
    if bytes.len() > len {
        return Err(DataError::format(
            path,
            "grew while it was being read; read it again when it is complete",
        ));
    }
    Ok(bytes)
}

/// Reads a whole regular file as UTF-8 text (see [`read_input`]).
///
/// # Errors
/// As [`read_input`], and [`DataError::Format`] for text that is not UTF-8.
pub fn read_input_text(path: &Path) -> Result<String, DataError> {
    String::from_utf8(read_input(path)?)
        .map_err(|e| DataError::format(path, format!("is not UTF-8 text ({e})")))
}

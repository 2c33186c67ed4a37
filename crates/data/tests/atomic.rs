//! Atomic writes.

mod common;

use std::fs;
use std::io;

use common::entries;
use mixburn_data::{
    write_atomic, write_atomic_path, write_matrix_npy, DataError, ElemType, Matrix,
};

#[test]
fn atomic_write_leaves_no_file_when_the_writer_fails() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("out.bin");
    let err = write_atomic(&p, |w| {
        w.write_all(b"partial data")?;
        Err(io::Error::other("simulated failure"))
    })
    .unwrap_err();
    assert!(matches!(err, DataError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("out.bin"), "{err}");
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
}

#[test]
fn atomic_write_keeps_the_old_file_when_the_writer_fails() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("out.bin");
    fs::write(&p, b"old").unwrap();
    let _ = write_atomic(&p, |w| {
        w.write_all(b"new but broken")?;
        Err(io::Error::other("simulated failure"))
    })
    .unwrap_err();
    assert_eq!(fs::read(&p).unwrap(), b"old");
    assert_eq!(entries(dir.path()), vec!["out.bin".to_string()]);
}

#[test]
fn atomic_write_cleans_up_when_the_writer_panics() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("out.bin");
    let result = std::panic::catch_unwind(|| {
        let _ = write_atomic(&p, |w| {
            w.write_all(b"x")?;
            panic!("writer bug");
        });
    });
    assert!(result.is_err());
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn atomic_write_replaces_the_file_on_success() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("out.bin");
    fs::write(&p, b"old").unwrap();
    write_atomic(&p, |w| w.write_all(b"new")).unwrap();
    assert_eq!(fs::read(&p).unwrap(), b"new");
    assert_eq!(entries(dir.path()), vec!["out.bin".to_string()]);
}

#[test]
fn writing_into_a_missing_directory_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("no/such/dir/x.npy");
    let m = Matrix::new(1, 1, vec![1.0], ElemType::F64).unwrap();
    let err = write_matrix_npy(&p, &m).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }), "{err:?}");
    assert!(err.to_string().starts_with("cannot read/write"), "{err}");
}

#[test]
fn path_writer_gets_a_temporary_path_with_the_extension_and_replaces_on_success() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("picture.png");
    fs::write(&p, b"old").unwrap();
    let mut seen = None;
    mixburn_data::write_atomic_path::<DataError>(&p, "png", |tmp| {
        seen = Some(tmp.to_path_buf());
        assert_eq!(tmp.parent(), p.parent(), "next to the destination");
        assert_eq!(tmp.extension().and_then(|e| e.to_str()), Some("png"));
        fs::write(tmp, b"new").map_err(|e| DataError::Io {
            path: tmp.to_path_buf(),
            source: e,
        })
    })
    .unwrap();
    assert!(!seen.unwrap().exists());
    assert_eq!(fs::read(&p).unwrap(), b"new");
    assert_eq!(entries(dir.path()), vec!["picture.png".to_string()]);
}

#[test]
fn path_writer_failure_keeps_the_old_file_and_removes_the_temporary_one() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("picture.png");
    fs::write(&p, b"old").unwrap();
    let err = mixburn_data::write_atomic_path::<DataError>(&p, "png", |tmp| {
        fs::write(tmp, b"half").unwrap();
        Err(DataError::Io {
            path: tmp.to_path_buf(),
            source: io::Error::other("encoder failed"),
        })
    })
    .unwrap_err();
    assert!(err.to_string().contains("encoder failed"), "{err}");
    assert_eq!(fs::read(&p).unwrap(), b"old");
    assert_eq!(entries(dir.path()), vec!["picture.png".to_string()]);

    // A missing directory is an I/O error naming the destination; nothing is written.
    let q = dir.path().join("no/such/dir/picture.png");
    let err = mixburn_data::write_atomic_path::<DataError>(&q, "png", |_| Ok(())).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("picture.png"), "{err}");
}

#[test]
fn atomic_write_through_a_symlink_replaces_the_target_and_keeps_the_link() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target.txt");
    let link = dir.path().join("link.txt");
    fs::write(&target, "old").unwrap();
    std::os::unix::fs::symlink(&target, &link).unwrap();
    write_atomic(&link, |w| w.write_all(b"new")).unwrap();
    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(fs::read_to_string(&target).unwrap(), "new");
    write_atomic_path(&link, "txt", |p| {
        fs::write(p, "from path").map_err(|e| DataError::Io {
            path: p.to_path_buf(),
            source: e,
        })
    })
    .unwrap();
    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(fs::read_to_string(&target).unwrap(), "from path");
    assert_eq!(entries(dir.path()), vec!["link.txt", "target.txt"]);
}

/// Reads everything written to the FIFO at `path` while `write` runs; checks that the path is
/// still a FIFO afterwards (before waiting for the reader, which a replaced FIFO would block).
fn through_fifo(path: &std::path::Path, write: impl FnOnce()) -> Vec<u8> {
    use std::os::unix::fs::FileTypeExt;
    let p = path.to_path_buf();
    let reader = std::thread::spawn(move || fs::read(p).unwrap());
    write();
    assert!(
        fs::metadata(path).unwrap().file_type().is_fifo(),
        "the FIFO was replaced"
    );
    reader.join().unwrap()
}

#[test]
fn atomic_write_to_a_pipe_writes_into_it_instead_of_replacing_it() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo");
    let got = through_fifo(&fifo, || {
        write_atomic(&fifo, |w| w.write_all(b"streamed")).unwrap()
    });
    assert_eq!(got, b"streamed");
    let got = through_fifo(&fifo, || {
        write_atomic_path(&fifo, "txt", |p| {
            fs::write(p, "via a file").map_err(|e| DataError::Io {
                path: p.to_path_buf(),
                source: e,
            })
        })
        .unwrap()
    });
    assert_eq!(got, b"via a file");
    assert_eq!(entries(dir.path()), vec!["pipe"]);
}

#[test]
fn links_planted_at_the_temporary_names_are_never_followed() {
    // Another user who can write the directory plants links at the temporary names a
    // predictable writer would pick (`.NAME.tmp<pid>`, `.NAME.tmp-<pid>-<n>`); the writer
    // creates its temporary exclusively under an unpredictable name and writes through none.
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim.txt");
    fs::write(&victim, "precious").unwrap();
    let pid = std::process::id();
    std::os::unix::fs::symlink(&victim, dir.path().join(format!(".out.bin.tmp{pid}"))).unwrap();
    for n in 0..2000 {
        let name = format!(".out.bin.tmp-{pid}-{n}");
        std::os::unix::fs::symlink(&victim, dir.path().join(name)).unwrap();
    }
    let out = dir.path().join("out.bin");
    write_atomic(&out, |w| w.write_all(b"model")).unwrap();
    assert_eq!(fs::read_to_string(&out).unwrap(), "model");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
    assert!(!fs::symlink_metadata(&out).unwrap().file_type().is_symlink());
}

#[test]
fn output_checks_refuse_missing_directories_directories_and_repeated_paths() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.npy");
    let missing = dir.path().join("no/such/b.npy");
    assert!(mixburn_data::check_outputs(&[&a]).is_ok());
    assert!(!a.exists(), "a check writes nothing");
    let err = mixburn_data::check_outputs(&[&a, &missing]).unwrap_err();
    assert!(err.to_string().contains("no/such/b.npy"), "{err}");
    let err = mixburn_data::check_outputs(&[dir.path()]).unwrap_err();
    assert!(err.to_string().contains("directory"), "{err}");
    let err = mixburn_data::check_outputs(&[&a, &a]).unwrap_err();
    assert!(err.to_string().contains("two outputs"), "{err}");
    assert!(mixburn_data::check_outputs(&[std::path::Path::new("/dev/null")]).is_ok());
    assert_eq!(entries(dir.path()), Vec::<String>::new());
}

/// Issue 28: outputs that belong together (samples and their labels) replace their files
/// together: a failure after the first is written leaves both old files, a panic leaves no
/// temporary behind, and success replaces both.
#[test]
fn outputs_written_together_are_replaced_together_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("x.npy"), dir.path().join("y.npy"));
    fs::write(&a, "old a").unwrap();
    fs::write(&b, "old b").unwrap();
    let failed: Result<(), DataError> = mixburn_data::replace_together(|| {
        write_atomic(&a, |w| w.write_all(b"new a"))?;
        write_atomic(&b, |_| Err(std::io::Error::other("disk full")))?;
        Ok(())
    });
    assert!(failed.is_err());
    assert_eq!(fs::read(&a).unwrap(), b"old a");
    assert_eq!(fs::read(&b).unwrap(), b"old b");
    let panicked = std::panic::catch_unwind(|| {
        mixburn_data::replace_together(|| {
            write_atomic(&a, |w| w.write_all(b"new a"))?;
            panic!("killed between the outputs");
            #[allow(unreachable_code)]
            Ok::<(), DataError>(())
        })
    });
    assert!(panicked.is_err());
    assert_eq!(fs::read(&a).unwrap(), b"old a");
    let left: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 2, "temporaries left behind: {left:?}");
    mixburn_data::replace_together(|| {
        write_atomic(&a, |w| w.write_all(b"new a"))?;
        // Not yet replaced: renamed when the scope ends well.
        assert_eq!(fs::read(&a).unwrap(), b"old a");
        write_atomic(&b, |w| w.write_all(b"new b"))
    })
    .unwrap();
    assert_eq!(fs::read(&a).unwrap(), b"new a");
    assert_eq!(fs::read(&b).unwrap(), b"new b");
}

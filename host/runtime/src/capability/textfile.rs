//! `herald:textfile/file@0.1.0` (`wit/textfile-v0.1.0`): the one file an
//! instance may write, for node_exporter's textfile collector. The grant is
//! the instance's `textfile` path (checked by `herald check`: a `.prom` file
//! in an existing directory, no two instances sharing it); the plugin names
//! no path. Each write replaces the whole file atomically: a temporary file
//! beside it (a name node_exporter ignores, as it reads only `*.prom`),
//! flushed to disk, then renamed over it. Linked for every plugin; a
//! component need not import it.

use crate::HostState;
use std::io::Write;
use std::path::{Path, PathBuf};
use wasmtime::component::{HasSelf, Linker};

/// Host bindings of the textfile package.
mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/textfile-v0.1.0",
        world: "textfile",
    });
}

use bindings::herald::textfile::file;

/// The interface's name, as the load-time import check lists it.
pub const INTERFACE: &str = "herald:textfile/file@0.1.0";

/// Largest content a plugin may write.
pub const MAX_BYTES: usize = 4 << 20;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    file::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
}

impl file::Host for HostState {
    fn granted(&mut self) -> bool {
        self.textfile.is_some()
    }

    fn write(&mut self, content: String) -> Result<(), String> {
        let Some(path) = self.textfile.clone() else {
            return Err(
                "no textfile granted: set `textfile = \"/path/name.prom\"` on the instance".into(),
            );
        };
        if content.len() > MAX_BYTES {
            return Err(format!(
                "{} bytes is over the textfile limit of {MAX_BYTES} bytes",
                content.len()
            ));
        }
        // The error names no path: the plugin may log it, and the operator
        // knows the instance's path from herald.toml.
        write_atomically(&path, content.as_bytes())
            .map_err(|e| format!("writing the instance's textfile failed: {e}"))
    }
}

/// Writes `data` to a temporary file beside `path`, flushes it to disk and
/// renames it over `path`: a reader sees the old file or the new one, whole.
pub fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp: PathBuf = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_the_whole_file_and_leave_no_temporary() {
        let dir = std::env::temp_dir().join(format!("herald-textfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("herald.prom");
        write_atomically(&path, b"a 1\nb 2\n").unwrap();
        write_atomically(&path, b"a 3\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a 3\n");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("herald.prom")]);
        let e = write_atomically(&dir.join("missing").join("x.prom"), b"").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

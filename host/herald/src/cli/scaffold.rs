//! `herald plugin new NAME --lang rust|python`: a standalone plugin project (its own
//! repository, not Herald's workspace) with a build command, a test, a README and a
//! `herald.toml` fragment whose `component` is the file the build writes.
//!
//! The templates are in `host/herald/templates/`, compiled into the binary.

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The language of a new plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    /// Rust, over the herald-sdk crate (Herald's plugins/sdk).
    Rust,
    /// Python, over the herald-sdk package (Herald's plugins/sdk-python) and componentize-py.
    Python,
}

/// `herald plugin new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The plugin's name: lower-case letters, digits and `-`, starting with a letter
    /// (the crate, the component file and the instance are named after it).
    pub name: String,
    /// The language.
    #[arg(long, value_enum)]
    pub lang: Lang,
    /// The directory to create the project in (the project is DIR/NAME).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Herald's SDK for the language: plugins/sdk (Rust) or plugins/sdk-python (Python) of a
    /// Herald checkout. Default: the one of the checkout this binary was built from, if it
    /// is still there.
    #[arg(long)]
    pub sdk: Option<PathBuf>,
    /// The tenant named in the example herald.toml fragment.
    #[arg(long, default_value = "default")]
    pub tenant: String,
}

const README: &str = include_str!("../../templates/README.md");
const FRAGMENT: &str = include_str!("../../templates/herald.example.toml");
const GITIGNORE: &str = include_str!("../../templates/gitignore");
const RUST_FILES: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../templates/rust/Cargo.toml"),
    ),
    ("src/lib.rs", include_str!("../../templates/rust/lib.rs")),
    ("Makefile", include_str!("../../templates/rust/Makefile")),
];
const PYTHON_FILES: &[(&str, &str)] = &[
    ("src/app.py", include_str!("../../templates/python/app.py")),
    (
        "src/sink.py",
        include_str!("../../templates/python/sink.py"),
    ),
    (
        "tests/test_sink.py",
        include_str!("../../templates/python/test_sink.py"),
    ),
    ("Makefile", include_str!("../../templates/python/Makefile")),
    (
        "requirements.txt",
        include_str!("../../templates/python/requirements.txt"),
    ),
];

/// Why a name is not a plugin name, if it is not.
fn check_name(name: &str) -> Option<&'static str> {
    let mut chars = name.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_lowercase()) {
        return Some("must start with a lower-case letter");
    }
    if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
        return Some("may hold only lower-case letters, digits and `-`");
    }
    if name.len() > 64 || name.ends_with('-') {
        return Some("must be at most 64 characters and not end with `-`");
    }
    None
}

/// The SDK of the checkout this binary was built from, when it still exists.
fn default_sdk(lang: Lang) -> Option<PathBuf> {
    let dir = match lang {
        Lang::Rust => "sdk",
        Lang::Python => "sdk-python",
    };
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../plugins")
        .join(dir);
    p.is_dir().then(|| p.canonicalize().unwrap_or(p))
}

fn render(template: &str, vars: &[(&str, String)]) -> String {
    vars.iter().fold(template.to_string(), |t, (k, v)| {
        t.replace(&format!("{{{{{k}}}}}"), v)
    })
}

/// Creates the project; returns its directory.
pub fn create(args: &NewArgs) -> anyhow::Result<PathBuf> {
    if let Some(why) = check_name(&args.name) {
        bail!("plugin name `{}`: {why}", args.name);
    }
    let sdk = match args.sdk.clone().or_else(|| default_sdk(args.lang)) {
        Some(s) => s,
        None => bail!("--sdk is needed: the path of plugins/sdk (Rust) or plugins/sdk-python (Python) in a Herald checkout"),
    };
    let (marker, what) = match args.lang {
        Lang::Rust => ("Cargo.toml", "plugins/sdk (the herald-sdk crate)"),
        Lang::Python => ("herald_sdk/__init__.py", "plugins/sdk-python"),
    };
    if !sdk.join(marker).is_file() {
        bail!(
            "--sdk {}: not Herald's {what} (no {marker} there)",
            sdk.display()
        );
    }
    let sdk = sdk.canonicalize().unwrap_or(sdk);
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let root = args
        .dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", args.dir.display()))?
        .join(&args.name);
    if root.exists() {
        bail!(
            "{} exists already; choose another name or --dir",
            root.display()
        );
    }
    let crate_name = args.name.replace('-', "_");
    let component = root.join("build").join(format!("{}.wasm", args.name));
    let (files, lang_name, source, setup) = match args.lang {
        Lang::Rust => (RUST_FILES, "Rust", "src/lib.rs", String::new()),
        Lang::Python => (
            PYTHON_FILES,
            "Python",
            "src/sink.py",
            "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt\nexport PYTHON=.venv/bin/python\n".to_string(),
        ),
    };
    let vars = [
        ("name", args.name.clone()),
        ("crate", crate_name),
        ("sdk", sdk.display().to_string()),
        ("component", component.display().to_string()),
        ("tenant", args.tenant.clone()),
        ("lang_name", lang_name.to_string()),
        ("source", source.to_string()),
        ("setup", setup),
    ];
    let mut all: Vec<(&str, &str)> = files.to_vec();
    all.extend([
        ("README.md", README),
        ("herald.example.toml", FRAGMENT),
        (".gitignore", GITIGNORE),
    ]);
    for (rel, template) in all {
        let path = root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, render(template, &vars))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    // The SDK workspace's lock file: the same dependency versions as Herald's plugins, so the
    // project builds offline from what those builds fetched.
    if args.lang == Lang::Rust {
        if let Some(lock) = sdk.parent().map(|p| p.join("Cargo.lock")) {
            if lock.is_file() {
                std::fs::copy(&lock, root.join("Cargo.lock"))
                    .with_context(|| format!("cannot copy {}", lock.display()))?;
            }
        }
    }
    Ok(root)
}

/// `herald plugin new …`
pub fn main_new(args: NewArgs) -> ExitCode {
    match create(&args) {
        Ok(root) => {
            println!("created {}", root.display());
            println!("  cd {} && make test && make", root.display());
            println!(
                "  then add herald.example.toml's table to herald.toml and run `herald check`"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("herald plugin new: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["chat", "my-sink2", "a"] {
            assert_eq!(check_name(ok), None, "{ok}");
        }
        for bad in ["", "Chat", "2x", "my_sink", "a b", "x-", "ünï"] {
            assert!(check_name(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn every_placeholder_is_filled() {
        let vars: Vec<(&str, String)> = [
            "name",
            "crate",
            "sdk",
            "component",
            "tenant",
            "lang_name",
            "source",
            "setup",
        ]
        .iter()
        .map(|k| (*k, "x".to_string()))
        .collect();
        for (_, t) in RUST_FILES.iter().chain(PYTHON_FILES) {
            assert!(!render(t, &vars).contains("{{"), "{t}");
        }
        for t in [README, FRAGMENT] {
            assert!(!render(t, &vars).contains("{{"), "{t}");
        }
    }
}

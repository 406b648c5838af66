//! The JupyterLab extension (web/jupyterlab/): `setup` puts JupyterLab and the extension's
//! build tools in a virtual environment (target/xtask/jupyterlab) and its npm packages in
//! web/jupyterlab/node_modules; `test` builds the labextension against the freshly built
//! nib-complete (web/dist), pip-installs it into that environment, and runs its unit tests and
//! the end-to-end test (a Jupyter server, headless Chromium).

use std::path::PathBuf;
use std::process::Command;

use crate::{node_test, root, run_cmd};

/// JupyterLab and the Python build tools of web/jupyterlab/pyproject.toml, pinned.
const PACKAGES: &[(&str, &str)] = &[("jupyterlab", "4.6.6"), ("hatchling", "1.33.0"), ("hatch-jupyter-builder", "0.10.0")];

fn venv() -> PathBuf {
    root().join("target/xtask/jupyterlab")
}

fn bin(name: &str) -> PathBuf {
    venv().join("bin").join(name)
}

pub fn setup() -> Result<(), String> {
    let check = format!(
        "import importlib.metadata as m, sys\nsys.exit(any(m.version(p) != v for p, v in {:?}))",
        PACKAGES.iter().map(|(p, v)| (p.to_string(), v.to_string())).collect::<Vec<_>>()
    )
    .replace('"', "'");
    let have = Command::new(bin("python")).args(["-c", &check]).output().is_ok_and(|o| o.status.success());
    if !have {
        eprintln!("xtask: installing JupyterLab into {} (PyPI)", venv().display());
        run_cmd(Command::new(crate::setup::python()).args(["-m", "venv"]).arg(venv()))?;
        let pins: Vec<String> = PACKAGES.iter().map(|(p, v)| format!("{p}=={v}")).collect();
        run_cmd(Command::new(bin("python")).args(["-m", "pip", "install", "--disable-pip-version-check", "--quiet"]).args(&pins))?;
    }
    crate::setup::npm_ci(&root().join("web/jupyterlab"))
}

/// After `web::build` (the labextension ships web/dist's worker and wasm).
pub fn test() -> Result<(), String> {
    let ext = root().join("web/jupyterlab");
    let path = format!("{}:{}", venv().join("bin").display(), std::env::var("PATH").unwrap_or_default());
    run_cmd(Command::new("npm").args(["run", "--silent", "build"]).current_dir(&ext).env("PATH", &path))?;
    // The labextension just built, as a user installs it (the build hook skips npm: it is built).
    run_cmd(Command::new(bin("python")).args(["-m", "pip", "install", "--disable-pip-version-check", "--quiet", "--no-build-isolation", "--no-deps", "--force-reinstall"]).arg(&ext))?;
    run_cmd(node_test().args(["--test-concurrency=1", "test/"]).current_dir(&ext))
}

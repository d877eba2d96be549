//! The end-to-end suite, one test binary with a module per capability. Each test starts its
//! own real stack ([`e2e::Env`]); up to [`e2e::stacks_at_once`] of them run side by side.
//! One binary rather than one per file: `cargo test` runs test binaries one after another,
//! so only tests of the same binary can overlap, and each binary is one more link.
//!
//! Run one module with `cargo xtask test -p e2e --test end_to_end recurring::`.

mod chat;
mod mcp;
mod publish_faults;
mod recurring;
mod relay;
mod reminders;
mod run_file;
mod set_reminders;
mod traces;
mod walking_skeleton;
mod web;

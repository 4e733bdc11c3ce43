//! One module per subcommand: each turns its arguments into calls on the library crates.

pub mod agent;
pub mod demo;
pub mod eval;
pub mod features;
pub mod report;
pub mod run;
pub mod simulate;
pub mod topics;

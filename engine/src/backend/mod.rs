//! The op set every architecture is written against.
pub mod cpu;

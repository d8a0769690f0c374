//! Everything that knows ZFS's vocabulary: names, listings, command lines.

pub mod cmd;
pub mod list;
pub mod name;

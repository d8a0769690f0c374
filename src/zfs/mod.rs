//! Everything that knows ZFS's vocabulary: names, listings, command lines, and what
//! other hosts hand us (resume tokens, stream headers), decoded before it is believed.

pub mod begin;
pub mod cmd;
pub mod list;
pub mod name;
pub mod token;

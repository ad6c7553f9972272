//! Sorted string tables: immutable files of internal keys and values.
//!
//! ```text
//! [data block][crc32] … [index block][crc32] [bloom][crc32] [properties][crc32]
//! [zero padding to 4 KiB − 80] [footer: 80 bytes, bytemuck POD]
//! ```
//!
//! - Data blocks ([`block`]) hold entries in internal-key order, prefix-compressed, with a
//!   restart point every 16 entries; a block is cut once it reaches the configured size.
//! - The index block maps the last key of each data block to its handle.
//! - The bloom filter ([`bloom`]) covers key heads (space + user key).
//! - The properties block ([`footer::Properties`]) records key range, timestamp range,
//!   seqno range and counts, so time-bounded reads and the range-tombstone bookkeeping can
//!   decide about a table without reading its data.
//! - The footer ([`footer::Footer`]) holds the handles, magic and version and its own crc.
//!
//! Every block read from disk is checked against its crc32; any mismatch or malformed byte
//! is `Error::Corruption` naming the file and offset. Files are written whole, padded to
//! 4 KiB for O_DIRECT.

pub mod block;
pub mod bloom;
pub mod builder;
pub mod footer;
pub mod reader;

pub use builder::TableBuilder;
pub use footer::Properties;
pub use reader::Table;

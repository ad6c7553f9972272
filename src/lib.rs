//! chitin

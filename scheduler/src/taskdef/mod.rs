//! taskdef (being written).

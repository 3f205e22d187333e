//! OCI runtime spec building.

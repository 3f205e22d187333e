//! Trust between the scheduler, its agents and its clients: the cluster CA and the
//! certificates it signs (`pki`), the identity a certificate names (`identity`), bearer tokens
//! (`token`), who may call what (`auth`), and what the scheduler sets up at start (`setup`).

pub mod auth;
pub mod identity;
pub mod pki;
pub mod setup;
pub mod token;

pub use auth::{Caller, Denied, Role, Rpc, Scope};
pub use identity::{AgentIdentity, ClientIdentity, PeerIdentity, serial_of_pem, spki_pin};
pub use pki::{ClusterCa, GivenCa, PkiError};

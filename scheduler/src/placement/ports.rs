//! Host ports as placement counts them: a port number with its protocol, the unit of both a
//! task's demand and an instance's free capacity.

use std::fmt;

/// The protocol of a host port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// The protocol a port mapping or binding names: "udp" (in any case) is UDP; anything else
    /// is TCP, the default (the registration stores only "tcp" and "udp").
    pub fn named(name: &str) -> Self {
        if name.eq_ignore_ascii_case("udp") {
            Self::Udp
        } else {
            Self::Tcp
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

/// A host port with its protocol, shown as "8080/tcp".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostPort {
    pub protocol: Protocol,
    pub port: u32,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.port, self.protocol.name())
    }
}

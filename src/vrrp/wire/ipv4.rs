//! A minimal zero-copy IPv4 header view (`Ipv4Packet`): IHL and total length
//! honoured, enough to decode what an IPv4 raw socket delivers.

use std::net::Ipv4Addr;

use crate::vrrp::RxError;

pub(super) mod ip_field {
    pub type Field = core::ops::Range<usize>;

    /// Version (high nibble) and IHL in 32-bit words (low nibble).
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const SRC: Field = 12..16;
    pub const DST: Field = 16..20;
    /// Length of a header without options (IHL 5).
    pub const MIN_HEADER_LEN: usize = 20;
}

/// A zero-copy view of an IPv4 header and its payload.
///
/// `new_checked` validates version 4, IHL ≥ 5 and within the buffer, and
/// IHL×4 ≤ total length ≤ buffer length. Bytes beyond the total length
/// (link-layer padding) are ignored by [`Ipv4Packet::payload`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Ipv4Packet<T> {
        Ipv4Packet { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Ipv4Packet<T>, RxError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// * fewer than 20 bytes, IHL < 5, IHL×4 beyond the buffer, total
    ///   length < IHL×4 or total length beyond the buffer: `BadIpHeaderLength`;
    /// * version not 4: `NotVrrp` (not an IPv4 packet at all).
    pub fn check_len(&self) -> Result<(), RxError> {
        let len = self.buffer.as_ref().len();
        if len < ip_field::MIN_HEADER_LEN {
            return Err(RxError::BadIpHeaderLength);
        }
        if self.version() != 4 {
            return Err(RxError::NotVrrp);
        }
        let header_len = self.header_len();
        let total_len = usize::from(self.total_len());
        if header_len < ip_field::MIN_HEADER_LEN || header_len > len || total_len < header_len || total_len > len {
            return Err(RxError::BadIpHeaderLength);
        }
        Ok(())
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[ip_field::VER_IHL] >> 4
    }

    /// IHL × 4, in bytes.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[ip_field::VER_IHL] & 0x0f) * 4
    }

    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[ip_field::TOS]
    }

    pub fn total_len(&self) -> u16 {
        let b = &self.buffer.as_ref()[ip_field::LENGTH];
        u16::from_be_bytes([b[0], b[1]])
    }

    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[ip_field::TTL]
    }

    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[ip_field::PROTOCOL]
    }

    pub fn src_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[ip_field::SRC];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    pub fn dst_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[ip_field::DST];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// Bytes from the end of the header to the total length (padding excluded).
    pub fn payload(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        data.get(self.header_len()..usize::from(self.total_len()))
            .unwrap_or(&[])
    }
}

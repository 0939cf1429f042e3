//! The zero-copy VRRP message view (`Packet`, smoltcp style) and its field
//! offsets (`field`): v2 per RFC 3768 §5.1, v3 per RFC 9568 §5.1.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::checksum;
use super::{Family, AUTH_DATA_LEN, HEADER_LEN, PROTOCOL};
use crate::vrrp::{ChecksumForm, RxError};

pub(super) mod field {
    pub type Field = core::ops::Range<usize>;

    /// Version (high nibble) and type (low nibble).
    pub const VER_TYPE: usize = 0;
    pub const VRID: usize = 1;
    pub const PRIORITY: usize = 2;
    pub const COUNT: usize = 3;
    /// v3: 4 reserved bits, then the 12-bit max advertisement interval (centiseconds).
    pub const MAX_ADVER_INT: Field = 4..6;
    pub const MAX_ADVER_INT_MASK: u16 = 0x0fff;
    /// v2: authentication type.
    pub const AUTH_TYPE: usize = 4;
    /// v2: advertisement interval in seconds.
    pub const ADVER_INT: usize = 5;
    pub const CHECKSUM: Field = 6..8;
    /// Start of the address list (4 or 16 bytes each); v2 auth data follows it.
    pub const ADDRS: usize = 8;
}

/// A zero-copy view of a VRRP (v2 or v3) message.
///
/// Fixed-field getters index the buffer directly: build the view with
/// [`Packet::new_checked`] (or call [`Packet::check_len`]) before using them.
/// Accessors of the variable part (addresses, v2 auth data) return `Option`
/// and never panic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap a buffer without checking its length.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wrap a buffer, checking that the fixed header fits.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, RxError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `TooShort` unless the 8-byte fixed header fits (RX2).
    pub fn check_len(&self) -> Result<(), RxError> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(RxError::TooShort)
        } else {
            Ok(())
        }
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version field (high nibble of byte 0).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TYPE] >> 4
    }

    /// Type field (low nibble of byte 0).
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TYPE] & 0x0f
    }

    pub fn vrid(&self) -> u8 {
        self.buffer.as_ref()[field::VRID]
    }

    pub fn priority(&self) -> u8 {
        self.buffer.as_ref()[field::PRIORITY]
    }

    /// Count IPvX Addr.
    pub fn addr_count(&self) -> u8 {
        self.buffer.as_ref()[field::COUNT]
    }

    /// v3: the 4 reserved bits before the interval (ignored on receive, RX12).
    pub fn reserved(&self) -> u8 {
        self.buffer.as_ref()[field::MAX_ADVER_INT.start] >> 4
    }

    /// v3: Max Adver Int, 12 bits, centiseconds (reserved bits masked off).
    pub fn max_adver_int(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::MAX_ADVER_INT];
        u16::from_be_bytes([b[0], b[1]]) & field::MAX_ADVER_INT_MASK
    }

    /// v2: Auth Type.
    pub fn auth_type(&self) -> u8 {
        self.buffer.as_ref()[field::AUTH_TYPE]
    }

    /// v2: Adver Int, whole seconds.
    pub fn adver_int(&self) -> u8 {
        self.buffer.as_ref()[field::ADVER_INT]
    }

    pub fn checksum(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::CHECKSUM];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Length the message must have for its address count in `family`
    /// (8 + count × 4|16, plus 8 auth bytes for v2).
    pub fn message_len(&self, family: Family) -> usize {
        let auth = if self.version() == 2 { AUTH_DATA_LEN } else { 0 };
        HEADER_LEN + usize::from(self.addr_count()) * family.addr_len() + auth
    }

    /// `TooShort` unless the buffer holds every address counted (and v2 auth data).
    pub fn check_addrs(&self, family: Family) -> Result<(), RxError> {
        if self.buffer.as_ref().len() < self.message_len(family) {
            Err(RxError::TooShort)
        } else {
            Ok(())
        }
    }

    /// Address `index` of the list, `None` if it is not in the buffer.
    pub fn addr(&self, family: Family, index: usize) -> Option<IpAddr> {
        let len = family.addr_len();
        let start = field::ADDRS.checked_add(index.checked_mul(len)?)?;
        let bytes = self.buffer.as_ref().get(start..start.checked_add(len)?)?;
        Some(match family {
            Family::V4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?)),
            Family::V6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        })
    }

    /// All counted addresses that are in the buffer.
    pub fn addrs(&self, family: Family) -> Vec<IpAddr> {
        (0..usize::from(self.addr_count()))
            .map_while(|i| self.addr(family, i))
            .collect()
    }

    /// v2: the 8 authentication bytes after the addresses, if present.
    pub fn auth_data(&self, family: Family) -> Option<[u8; AUTH_DATA_LEN]> {
        let start = field::ADDRS + usize::from(self.addr_count()) * family.addr_len();
        let bytes = self.buffer.as_ref().get(start..start + AUTH_DATA_LEN)?;
        <[u8; AUTH_DATA_LEN]>::try_from(bytes).ok()
    }

    /// Verify the checksum over the whole buffer in the given form; `src`
    /// and `dst` matter for the pseudo-header forms only. v2 always uses
    /// the message-only form, v3 over IPv6 always the pseudo-header.
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr, form: ChecksumForm) -> bool {
        let data = self.buffer.as_ref();
        checksum::verify(pseudo_sum(self.version(), src, dst, form, data.len()), data)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_version_type(&mut self, version: u8, msg_type: u8) {
        self.buffer.as_mut()[field::VER_TYPE] = (version << 4) | (msg_type & 0x0f);
    }

    pub fn set_vrid(&mut self, vrid: u8) {
        self.buffer.as_mut()[field::VRID] = vrid;
    }

    pub fn set_priority(&mut self, priority: u8) {
        self.buffer.as_mut()[field::PRIORITY] = priority;
    }

    pub fn set_addr_count(&mut self, count: u8) {
        self.buffer.as_mut()[field::COUNT] = count;
    }

    /// v3: writes the 12-bit interval with the reserved bits zero (RX12).
    pub fn set_max_adver_int(&mut self, centis: u16) {
        let v = centis & field::MAX_ADVER_INT_MASK;
        self.buffer.as_mut()[field::MAX_ADVER_INT].copy_from_slice(&v.to_be_bytes());
    }

    /// v2.
    pub fn set_auth_type(&mut self, auth_type: u8) {
        self.buffer.as_mut()[field::AUTH_TYPE] = auth_type;
    }

    /// v2.
    pub fn set_adver_int(&mut self, secs: u8) {
        self.buffer.as_mut()[field::ADVER_INT] = secs;
    }

    pub fn set_checksum(&mut self, value: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&value.to_be_bytes());
    }

    /// Write address `index`; `false` (nothing written) if it does not fit.
    pub fn set_addr(&mut self, index: usize, addr: IpAddr) -> bool {
        let octets: &[u8] = match &addr {
            IpAddr::V4(a) => &a.octets(),
            IpAddr::V6(a) => &a.octets(),
        };
        let len = octets.len();
        let Some(start) = index.checked_mul(len).and_then(|o| o.checked_add(field::ADDRS)) else {
            return false;
        };
        match self.buffer.as_mut().get_mut(start..start.saturating_add(len)) {
            Some(dst) if dst.len() == len => {
                dst.copy_from_slice(octets);
                true
            }
            _ => false,
        }
    }

    /// v2: write the auth data after `addr_count` addresses of `family`;
    /// `false` if it does not fit.
    pub fn set_auth_data(&mut self, family: Family, data: [u8; AUTH_DATA_LEN]) -> bool {
        let start = field::ADDRS + usize::from(self.addr_count()) * family.addr_len();
        match self.buffer.as_mut().get_mut(start..start + AUTH_DATA_LEN) {
            Some(dst) => {
                dst.copy_from_slice(&data);
                true
            }
            None => false,
        }
    }

    /// Compute and store the checksum over the whole buffer.
    pub fn fill_checksum(&mut self, src: IpAddr, dst: IpAddr, form: ChecksumForm) {
        self.set_checksum(0);
        let pseudo = pseudo_sum(self.version(), src, dst, form, self.buffer.as_ref().len());
        let value = checksum::compute(pseudo, self.buffer.as_ref());
        self.set_checksum(value);
    }
}

/// Pseudo-header sum for a VRRP message of `len` bytes (0 where none applies).
fn pseudo_sum(version: u8, src: IpAddr, dst: IpAddr, form: ChecksumForm, len: usize) -> u64 {
    if version == 2 {
        return 0;
    }
    match (src, dst) {
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            checksum::pseudo_header_v6(s, d, PROTOCOL, u32::try_from(len).unwrap_or(u32::MAX))
        }
        (IpAddr::V4(s), IpAddr::V4(d)) if form == ChecksumForm::PseudoHeader => {
            checksum::pseudo_header_v4(s, d, PROTOCOL, u16::try_from(len).unwrap_or(u16::MAX))
        }
        _ => 0,
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::super::fixtures::*;
    use super::super::*;

    #[test]
    fn deconstruct_v2() {
        let p = Packet::new_checked(&V2_BYTES[..]).unwrap();
        assert_eq!((p.version(), p.msg_type(), p.vrid(), p.priority()), (2, 1, 51, 100));
        assert_eq!(
            (p.addr_count(), p.auth_type(), p.adver_int(), p.checksum()),
            (2, 0, 1, 0xf5fe)
        );
        assert_eq!(p.addrs(Family::V4), vec![v4(100), v4(101)]);
        assert_eq!(p.auth_data(Family::V4), Some([0; 8]));
        assert_eq!(p.message_len(Family::V4), 24);
        let p = Packet::new_checked(&V2_PASS_BYTES[..]).unwrap();
        assert_eq!((p.auth_type(), p.auth_data(Family::V4)), (1, Some(*b"secret\0\0")));
    }

    #[test]
    fn construct_v2() {
        let mut p = Packet::new_unchecked(vec![0xa5u8; 24]);
        p.set_version_type(2, 1);
        p.set_vrid(51);
        p.set_priority(100);
        p.set_addr_count(2);
        p.set_auth_type(0);
        p.set_adver_int(1);
        assert!(p.set_addr(0, v4(100)));
        assert!(p.set_addr(1, v4(101)));
        assert!(!p.set_addr(4, v4(1)), "beyond the buffer");
        assert!(p.set_auth_data(Family::V4, [0; 8]));
        p.fill_checksum(IpAddr::V4(SRC4), IpAddr::V4(GROUP_V4), ChecksumForm::PseudoHeader);
        assert_eq!(p.into_inner(), V2_BYTES);
    }

    #[test]
    fn deconstruct_v3() {
        let p = Packet::new_checked(&V3_V4_PSEUDO_BYTES[..]).unwrap();
        assert_eq!(
            (p.version(), p.msg_type(), p.vrid(), p.priority(), p.addr_count()),
            (3, 1, 51, 100, 2)
        );
        assert_eq!((p.reserved(), p.max_adver_int(), p.checksum()), (0, 100, 0x4307));
        assert_eq!(p.addrs(Family::V4), vec![v4(100), v4(101)]);
        let p = Packet::new_checked(&V3_V6_BYTES[..]).unwrap();
        assert_eq!(p.addrs(Family::V6), advert_v3_v6().addrs);
        assert_eq!(p.addr(Family::V6, 2), None);
        assert_eq!(p.message_len(Family::V6), 40);
    }

    #[test]
    fn construct_v3() {
        let mut p = Packet::new_unchecked(vec![0xffu8; 16]);
        p.set_version_type(3, 1);
        p.set_vrid(51);
        p.set_priority(100);
        p.set_addr_count(2);
        p.set_max_adver_int(100);
        p.set_addr(0, v4(100));
        p.set_addr(1, v4(101));
        p.fill_checksum(IpAddr::V4(SRC4), IpAddr::V4(GROUP_V4), ChecksumForm::PseudoHeader);
        assert_eq!(p.into_inner(), V3_V4_PSEUDO_BYTES);
    }
}

//! VRRP v2/v3 wire codec, smoltcp style.
//!
//! * [`Packet`] is a zero-copy view of a VRRP message (v2: RFC 3768 §5.1,
//!   v3: RFC 9568 §5.1) over any `T: AsRef<[u8]>`, with setters when
//!   `T: AsMut<[u8]>`. Offsets live in the private `field` module.
//! * [`Ipv4Packet`] is a minimal view of an IPv4 header (IHL and total length
//!   honoured), enough to decode what an IPv4 raw socket delivers.
//! * [`decode_ipv4`] / [`decode_ipv6`] validate in RFC 9568 §7.1 order and
//!   return [`Received`] or a [`Discard`] naming the ledger reason (RX1..RX9).
//! * [`emit`] / [`try_emit`] build the VRRP message (no IP header: the kernel
//!   adds it) with its checksum.
//!
//! Decoding never panics, whatever the input (proptest and `fuzz/` check it).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Advert, Auth, Centis, ChecksumForm, Discard, Interval, Received, RxError, Secs, Version};

/// IP protocol number of VRRP.
pub const PROTOCOL: u8 = 112;
/// IPv4 multicast group 224.0.0.18.
pub const GROUP_V4: std::net::Ipv4Addr = std::net::Ipv4Addr::new(224, 0, 0, 18);
/// IPv6 multicast group ff02::12.
pub const GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// The only VRRP message type (RX4).
pub const TYPE_ADVERTISEMENT: u8 = 1;
/// Fixed part of a VRRP message (both versions).
pub const HEADER_LEN: usize = 8;
/// v2 authentication data that follows the addresses.
pub const AUTH_DATA_LEN: usize = 8;
/// v2 auth type 0: no authentication.
pub const AUTH_TYPE_NONE: u8 = 0;
/// v2 auth type 1: simple text password.
pub const AUTH_TYPE_SIMPLE: u8 = 1;
/// The count field is 8 bits.
pub const MAX_ADDRS: usize = 255;
/// TTL / hop limit every VRRP packet must carry (RX1, TX1).
pub const TTL: u8 = 255;

mod field {
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

mod ip_field {
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

/// Address family of a VRRP address list (taken from the carrying IP header).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(addr: IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// Bytes per address in the list.
    pub fn addr_len(self) -> usize {
        match self {
            Family::V4 => 4,
            Family::V6 => 16,
        }
    }

    /// The VRRP multicast group of this family.
    pub fn group(self) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(GROUP_V4),
            Family::V6 => IpAddr::V6(GROUP_V6),
        }
    }
}

/// Internet checksum (RFC 1071) helpers.
pub mod checksum {
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// One's complement sum of `data` as big-endian 16-bit words (odd tail
    /// padded with zero), not yet folded. u64 cannot overflow for any slice.
    pub fn sum(data: &[u8]) -> u64 {
        let mut chunks = data.chunks_exact(2);
        let mut acc: u64 = chunks
            .by_ref()
            .map(|w| u64::from(u16::from_be_bytes([w[0], w[1]])))
            .sum();
        if let [last] = chunks.remainder() {
            acc += u64::from(*last) << 8;
        }
        acc
    }

    /// Fold a sum to 16 bits with end-around carry.
    pub fn fold(mut acc: u64) -> u16 {
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    /// IPv4 pseudo-header (src, dst, zero, protocol, length) sum.
    pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> u64 {
        sum(&src.octets()) + sum(&dst.octets()) + u64::from(protocol) + u64::from(length)
    }

    /// RFC 8200 §8.1 pseudo-header (src, dst, u32 upper-layer length, 3 zero bytes, next header) sum.
    pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, length: u32) -> u64 {
        sum(&src.octets()) + sum(&dst.octets()) + sum(&length.to_be_bytes()) + u64::from(next_header)
    }

    /// The checksum to store: complement of the folded sum of `pseudo` and
    /// `data` (whose checksum field must be zero).
    pub fn compute(pseudo: u64, data: &[u8]) -> u16 {
        !fold(pseudo + sum(data))
    }

    /// True if `data` (checksum field included) verifies with `pseudo`.
    pub fn verify(pseudo: u64, data: &[u8]) -> bool {
        fold(pseudo + sum(data)) == 0xffff
    }
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

fn discard(reason: RxError, vrid: Option<u8>, src: Option<IpAddr>) -> Discard {
    Discard { reason, vrid, src }
}

/// Decode a whole IPv4 packet (IP header included, as an IPv4 raw socket
/// delivers it). Honours IHL and total length, checks TTL = 255.
///
/// Order: IP header lengths (`BadIpHeaderLength`; the source is reported
/// whenever the 20 fixed bytes are there), protocol 112 (`NotVrrp`), TTL
/// (RX1), then the VRRP checks of [`decode_ipv6`]'s list.
pub fn decode_ipv4(packet: &[u8]) -> Result<Received, Discard> {
    let ip = Ipv4Packet::new_unchecked(packet);
    let src = (packet.len() >= ip_field::MIN_HEADER_LEN).then(|| IpAddr::V4(ip.src_addr()));
    if let Err(reason) = ip.check_len() {
        // The VRRP VRID if the fixed header is there and IHL points at something readable.
        // Not IPv4 at all (`NotVrrp`): nothing is reported.
        let (vrid, src) = match (&reason, src) {
            (RxError::BadIpHeaderLength, Some(src)) => (
                packet
                    .get(ip.header_len().max(ip_field::MIN_HEADER_LEN) + field::VRID)
                    .copied(),
                Some(src),
            ),
            _ => (None, None),
        };
        return Err(discard(reason, vrid, src));
    }
    let payload = ip.payload();
    let vrid = payload.get(field::VRID).copied();
    if ip.protocol() != PROTOCOL {
        return Err(discard(RxError::NotVrrp, vrid, src));
    }
    decode_vrrp(IpAddr::V4(ip.src_addr()), IpAddr::V4(ip.dst_addr()), ip.ttl(), payload)
}

/// Decode a VRRP message carried in IPv6 (an IPv6 raw socket delivers no IP
/// header: source, destination and hop limit come from recvmsg).
///
/// Checks, in order: hop limit 255 (RX1); fixed header present (RX2
/// `TooShort`); version 3 (RX3 `BadVersion`, v2 ⇒ `FamilyMismatch`, RX9);
/// type 1 (RX4); every counted address present (RX2 `TooShort`); checksum
/// with the RFC 8200 pseudo-header (RX5); count ≥ 1 and equal to the length
/// (RX7); interval ≠ 0 (RX8); source link-local (RX9). Reserved bits are
/// ignored (RX12). The *first address* of the list is deliberately not
/// required to be link-local: keepalived 2.2.7 sends the VIPs in configured
/// order, so a global VIP configured first comes first (captured:
/// tests/vectors/keepalived-v3-ipv6.hex sends 2001:db8::100 before
/// fe80::100; keepalived-v3-ipv6-llfirst.hex shows it does not reorder).
pub fn decode_ipv6(src: Ipv6Addr, dst: Ipv6Addr, hop_limit: u8, payload: &[u8]) -> Result<Received, Discard> {
    decode_vrrp(IpAddr::V6(src), IpAddr::V6(dst), hop_limit, payload)
}

/// Shared VRRP checks; `src`/`dst` are of one family, the list's family.
fn decode_vrrp(src: IpAddr, dst: IpAddr, ttl: u8, payload: &[u8]) -> Result<Received, Discard> {
    let family = Family::of(src);
    let vrid = payload.get(field::VRID).copied();
    let fail = |reason: RxError| discard(reason, vrid, Some(src));

    // RX1
    if ttl != TTL {
        return Err(fail(RxError::BadTtl));
    }
    // RX2 (fixed part)
    let packet = Packet::new_checked(payload).map_err(fail)?;
    // RX3
    let version = match (packet.version(), family) {
        (3, _) => Version::V3,
        (2, Family::V4) => Version::V2,
        (2, Family::V6) => return Err(fail(RxError::FamilyMismatch)),
        _ => return Err(fail(RxError::BadVersion)),
    };
    // RX4
    if packet.msg_type() != TYPE_ADVERTISEMENT {
        return Err(fail(RxError::BadType));
    }
    // RX2 (addresses and v2 auth data)
    packet.check_addrs(family).map_err(fail)?;
    // RX5
    let checksum_form = match (version, family) {
        (Version::V2, _) => ChecksumForm::MessageOnly,
        (Version::V3, Family::V6) => ChecksumForm::PseudoHeader,
        // A message that verifies in both forms (pseudo-header summing to
        // ones'-complement zero, ~1 in 65535) is reported as PseudoHeader.
        (Version::V3, Family::V4) => {
            if packet.verify_checksum(src, dst, ChecksumForm::PseudoHeader) {
                ChecksumForm::PseudoHeader
            } else {
                ChecksumForm::MessageOnly
            }
        }
    };
    if !packet.verify_checksum(src, dst, checksum_form) {
        return Err(fail(RxError::BadChecksum));
    }
    // RX7
    if packet.addr_count() == 0 {
        return Err(fail(RxError::AddrCountZero));
    }
    if payload.len() != packet.message_len(family) {
        return Err(fail(RxError::AddrCountMismatch));
    }
    // RX8 (RX12: reserved bits already masked by the getter)
    let interval = match version {
        Version::V3 => Centis::new(packet.max_adver_int()).map(Interval::V3),
        Version::V2 => Secs::new(packet.adver_int()).map(Interval::V2),
    }
    .ok_or_else(|| fail(RxError::IntervalZero))?;
    // RX9
    if let IpAddr::V6(s) = src {
        if !is_link_local(s) {
            return Err(fail(RxError::SourceNotLinkLocal));
        }
    }
    let auth = match version {
        // Other auth types (2 = IP AH, long deprecated) decode as None; the
        // router compares types (RX11) and can count the mismatch.
        Version::V2 if packet.auth_type() == AUTH_TYPE_SIMPLE => {
            packet.auth_data(family).map(Auth::Simple).unwrap_or(Auth::None)
        }
        _ => Auth::None,
    };
    Ok(Received {
        src,
        dst,
        ttl,
        checksum_form,
        advert: Advert {
            version,
            vrid: packet.vrid(),
            priority: packet.priority(),
            interval,
            addrs: packet.addrs(family),
            auth,
        },
    })
}

/// fe80::/10.
pub fn is_link_local(addr: Ipv6Addr) -> bool {
    addr.segments()[0] & 0xffc0 == 0xfe80
}

/// Why [`try_emit`] refused an advert (all are programming errors of the caller).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EmitError {
    /// Source and destination are of different families.
    MixedFamilies,
    /// An address in the list is not of the source's family.
    AddrFamily,
    /// v2 only runs over IPv4.
    V2OverIpv6,
    /// No address in the list (receivers discard it, RX7).
    NoAddresses,
    /// More than 255 addresses.
    TooManyAddresses,
    /// `Interval::V2` in a v3 advert or the reverse.
    IntervalVersion,
}

impl std::fmt::Display for EmitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EmitError::MixedFamilies => "source and destination of different families",
            EmitError::AddrFamily => "address of the wrong family in the list",
            EmitError::V2OverIpv6 => "VRRPv2 over IPv6",
            EmitError::NoAddresses => "empty address list",
            EmitError::TooManyAddresses => "more than 255 addresses",
            EmitError::IntervalVersion => "interval unit does not match the version",
        })
    }
}

impl std::error::Error for EmitError {}

/// Family of the list: that of its first address (IPv4 if empty).
fn list_family(advert: &Advert) -> Family {
    advert.addrs.first().map_or(Family::V4, |a| Family::of(*a))
}

/// Length of the message [`emit`] produces for `advert` when the source is
/// of the family of its first address (always so for a valid advert):
/// 8 + addresses × 4|16 (+ 8 for v2). Addresses of another family than the
/// first, and any beyond 255, are not counted (as `emit` skips them).
pub fn buffer_len(advert: &Advert) -> usize {
    let family = list_family(advert);
    let count = advert
        .addrs
        .iter()
        .filter(|a| Family::of(**a) == family)
        .take(MAX_ADDRS)
        .count();
    let auth = if advert.version == Version::V2 {
        AUTH_DATA_LEN
    } else {
        0
    };
    HEADER_LEN + count * family.addr_len() + auth
}

/// Strict emit: the VRRP message for `advert`, or why it cannot be sent.
pub fn try_emit(advert: &Advert, src: IpAddr, dst: IpAddr, form: ChecksumForm) -> Result<Vec<u8>, EmitError> {
    let family = Family::of(src);
    if Family::of(dst) != family {
        return Err(EmitError::MixedFamilies);
    }
    if advert.version == Version::V2 && family == Family::V6 {
        return Err(EmitError::V2OverIpv6);
    }
    if advert.addrs.iter().any(|a| Family::of(*a) != family) {
        return Err(EmitError::AddrFamily);
    }
    if advert.addrs.is_empty() {
        return Err(EmitError::NoAddresses);
    }
    if advert.addrs.len() > MAX_ADDRS {
        return Err(EmitError::TooManyAddresses);
    }
    match (advert.version, advert.interval) {
        (Version::V3, Interval::V3(_)) | (Version::V2, Interval::V2(_)) => {}
        _ => return Err(EmitError::IntervalVersion),
    }
    Ok(emit(advert, src, dst, form))
}

/// Emit the VRRP message (no IP header) for `advert`, with the checksum for
/// the given source/destination and form (the form matters only for v3/IPv4).
///
/// Never panics. For a valid advert (see [`try_emit`]) the result is exact;
/// otherwise it is lenient and documented: the list family is `src`'s and
/// addresses of the other family are skipped; at most 255 addresses; a `dst`
/// of the other family is replaced by the VRRP group of `src`'s family for
/// the pseudo-header; an interval of the other version is converted
/// (v2 s → v3 s×100 cs capped at 4095; v3 cs → v2 cs/100 s within 1..=255).
/// The version field is always `advert.version`; reserved bits are zero (RX12).
pub fn emit(advert: &Advert, src: IpAddr, dst: IpAddr, form: ChecksumForm) -> Vec<u8> {
    let family = Family::of(src);
    let dst = if Family::of(dst) == family { dst } else { family.group() };
    let addrs: Vec<IpAddr> = advert
        .addrs
        .iter()
        .copied()
        .filter(|a| Family::of(*a) == family)
        .take(MAX_ADDRS)
        .collect();
    let auth_len = if advert.version == Version::V2 {
        AUTH_DATA_LEN
    } else {
        0
    };
    let mut packet = Packet::new_unchecked(vec![0u8; HEADER_LEN + addrs.len() * family.addr_len() + auth_len]);
    packet.set_version_type(advert.version.number(), TYPE_ADVERTISEMENT);
    packet.set_vrid(advert.vrid);
    packet.set_priority(advert.priority);
    // At most MAX_ADDRS (255) by construction.
    packet.set_addr_count(u8::try_from(addrs.len()).unwrap_or(u8::MAX));
    match advert.version {
        Version::V3 => {
            let centis = match advert.interval {
                Interval::V3(c) => c.get(),
                Interval::V2(s) => (u16::from(s.get()) * 100).min(Centis::MAX),
            };
            packet.set_max_adver_int(centis);
        }
        Version::V2 => {
            let (auth_type, _) = auth_fields(advert.auth);
            packet.set_auth_type(auth_type);
            let secs = match advert.interval {
                Interval::V2(s) => s.get(),
                Interval::V3(c) => u8::try_from((c.get() / 100).max(1)).unwrap_or(u8::MAX),
            };
            packet.set_adver_int(secs);
        }
    }
    for (i, addr) in addrs.iter().enumerate() {
        packet.set_addr(i, *addr);
    }
    if advert.version == Version::V2 {
        let (_, data) = auth_fields(advert.auth);
        packet.set_auth_data(family, data);
    }
    packet.fill_checksum(src, dst, form);
    packet.into_inner()
}

fn auth_fields(auth: Auth) -> (u8, [u8; AUTH_DATA_LEN]) {
    match auth {
        Auth::None => (AUTH_TYPE_NONE, [0; AUTH_DATA_LEN]),
        Auth::Simple(data) => (AUTH_TYPE_SIMPLE, data),
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    // ---- pinned vectors (VRRP messages captured from keepalived 2.2.7, see tests/vectors/) ----
    // VID 51, priority 100, 1 s, from 192.0.2.1 to 224.0.0.18.
    static V2_BYTES: [u8; 24] = [
        0x21, 0x33, 0x64, 0x02, 0x00, 0x01, 0xf5, 0xfe, 0xc0, 0x00, 0x02, 0x64, 0xc0, 0x00, 0x02, 0x65, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    static V2_PASS_BYTES: [u8; 20] = [
        0x21, 0x33, 0x64, 0x01, 0x01, 0x01, 0x7b, 0x19, 0xc0, 0x00, 0x02, 0x64, b's', b'e', b'c', b'r', b'e', b't',
        0x00, 0x00,
    ];
    static V3_V4_PSEUDO_BYTES: [u8; 16] = [
        0x31, 0x33, 0x64, 0x02, 0x00, 0x64, 0x43, 0x07, 0xc0, 0x00, 0x02, 0x64, 0xc0, 0x00, 0x02, 0x65,
    ];
    // Same advert, RFC 9568 message-only checksum (computed independently with python3: 0xe59b).
    static V3_V4_MSGONLY_BYTES: [u8; 16] = [
        0x31, 0x33, 0x64, 0x02, 0x00, 0x64, 0xe5, 0x9b, 0xc0, 0x00, 0x02, 0x64, 0xc0, 0x00, 0x02, 0x65,
    ];
    // From fe80::ff:fe00:1 to ff02::12: 2001:db8::100 (global, first!) and fe80::100.
    static V3_V6_BYTES: [u8; 40] = [
        0x31, 0x33, 0x64, 0x02, 0x00, 0x64, 0x3e, 0xfd, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
        0x00, 0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00,
    ];

    const SRC4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const SRC6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0xff, 0xfe00, 1);

    fn v4(a: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, a))
    }

    fn advert_v2(auth: Auth) -> Advert {
        let addrs = if auth == Auth::None {
            vec![v4(100), v4(101)]
        } else {
            vec![v4(100)]
        };
        Advert {
            version: Version::V2,
            vrid: 51,
            priority: 100,
            interval: Interval::V2(Secs::new(1).unwrap()),
            addrs,
            auth,
        }
    }

    fn advert_v3_v4() -> Advert {
        Advert {
            version: Version::V3,
            vrid: 51,
            priority: 100,
            interval: Interval::V3(Centis::new(100).unwrap()),
            addrs: vec![v4(100), v4(101)],
            auth: Auth::None,
        }
    }

    fn advert_v3_v6() -> Advert {
        Advert {
            version: Version::V3,
            vrid: 51,
            priority: 100,
            interval: Interval::V3(Centis::new(100).unwrap()),
            addrs: vec!["2001:db8::100".parse().unwrap(), "fe80::100".parse().unwrap()],
            auth: Auth::None,
        }
    }

    const PASS: Auth = Auth::Simple(*b"secret\0\0");

    /// IPv4 packet: header of `ihl` words (options zero), given TTL/protocol, then `vrrp`.
    fn ipv4_with(ihl: u8, ttl: u8, protocol: u8, vrrp: &[u8]) -> Vec<u8> {
        let hl = usize::from(ihl) * 4;
        let mut p = vec![0u8; hl];
        p[0] = 0x40 | ihl;
        p[1] = 0xc0;
        p[2..4].copy_from_slice(&u16::try_from(hl + vrrp.len()).unwrap().to_be_bytes());
        p[8] = ttl;
        p[9] = protocol;
        p[12..16].copy_from_slice(&SRC4.octets());
        p[16..20].copy_from_slice(&GROUP_V4.octets());
        p.extend_from_slice(vrrp);
        p
    }

    fn ipv4(vrrp: &[u8]) -> Vec<u8> {
        ipv4_with(5, 255, PROTOCOL, vrrp)
    }

    fn decode6(vrrp: &[u8]) -> Result<Received, Discard> {
        decode_ipv6(SRC6, GROUP_V6, 255, vrrp)
    }

    /// Recompute the checksum of a (mutated) message in `form`.
    fn refill(bytes: &[u8], src: IpAddr, dst: IpAddr, form: ChecksumForm) -> Vec<u8> {
        let mut p = Packet::new_unchecked(bytes.to_vec());
        p.fill_checksum(src, dst, form);
        p.into_inner()
    }

    fn refill4(bytes: &[u8]) -> Vec<u8> {
        refill(
            bytes,
            IpAddr::V4(SRC4),
            IpAddr::V4(GROUP_V4),
            ChecksumForm::PseudoHeader,
        )
    }

    fn refill6(bytes: &[u8]) -> Vec<u8> {
        refill(
            bytes,
            IpAddr::V6(SRC6),
            IpAddr::V6(GROUP_V6),
            ChecksumForm::PseudoHeader,
        )
    }

    fn reason(r: Result<Received, Discard>) -> RxError {
        r.expect_err("must be discarded").reason
    }

    // ---- deconstruct / construct / parse / emit ----

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
    fn parse_v2() {
        let r = decode_ipv4(&ipv4(&V2_BYTES)).unwrap();
        assert_eq!(r.advert, advert_v2(Auth::None));
        assert_eq!((r.src, r.dst, r.ttl), (IpAddr::V4(SRC4), IpAddr::V4(GROUP_V4), 255));
        assert_eq!(r.checksum_form, ChecksumForm::MessageOnly);
        let r = decode_ipv4(&ipv4(&V2_PASS_BYTES)).unwrap();
        assert_eq!(r.advert, advert_v2(PASS));
    }

    #[test]
    fn parse_v2_unknown_auth_type_is_none() {
        let mut b = V2_BYTES.to_vec();
        b[4] = 2; // IP AH
        let r = decode_ipv4(&ipv4(&refill4(&b))).unwrap();
        assert_eq!(r.advert.auth, Auth::None);
    }

    #[test]
    fn emit_v2() {
        let (s, d) = (IpAddr::V4(SRC4), IpAddr::V4(GROUP_V4));
        for form in [ChecksumForm::PseudoHeader, ChecksumForm::MessageOnly] {
            assert_eq!(
                emit(&advert_v2(Auth::None), s, d, form),
                V2_BYTES,
                "v2 ignores the form"
            );
            assert_eq!(try_emit(&advert_v2(PASS), s, d, form).unwrap(), V2_PASS_BYTES);
        }
        assert_eq!(buffer_len(&advert_v2(Auth::None)), V2_BYTES.len());
        assert_eq!(buffer_len(&advert_v2(PASS)), V2_PASS_BYTES.len());
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

    #[test]
    fn parse_v3_ipv4_both_forms() {
        let r = decode_ipv4(&ipv4(&V3_V4_PSEUDO_BYTES)).unwrap();
        assert_eq!(
            (r.advert.clone(), r.checksum_form),
            (advert_v3_v4(), ChecksumForm::PseudoHeader)
        );
        let r = decode_ipv4(&ipv4(&V3_V4_MSGONLY_BYTES)).unwrap();
        assert_eq!((r.advert, r.checksum_form), (advert_v3_v4(), ChecksumForm::MessageOnly));
    }

    #[test]
    fn emit_v3_ipv4_both_forms() {
        let (s, d) = (IpAddr::V4(SRC4), IpAddr::V4(GROUP_V4));
        assert_eq!(
            emit(&advert_v3_v4(), s, d, ChecksumForm::PseudoHeader),
            V3_V4_PSEUDO_BYTES
        );
        assert_eq!(
            emit(&advert_v3_v4(), s, d, ChecksumForm::MessageOnly),
            V3_V4_MSGONLY_BYTES
        );
        assert_eq!(buffer_len(&advert_v3_v4()), 16);
    }

    #[test]
    fn parse_and_emit_v3_ipv6() {
        let r = decode6(&V3_V6_BYTES).unwrap();
        assert_eq!(r.advert, advert_v3_v6());
        assert_eq!(r.checksum_form, ChecksumForm::PseudoHeader);
        assert_eq!((r.src, r.dst, r.ttl), (IpAddr::V6(SRC6), IpAddr::V6(GROUP_V6), 255));
        for form in [ChecksumForm::PseudoHeader, ChecksumForm::MessageOnly] {
            let out = emit(&advert_v3_v6(), IpAddr::V6(SRC6), IpAddr::V6(GROUP_V6), form);
            assert_eq!(out, V3_V6_BYTES, "IPv6 always uses the pseudo-header");
        }
        assert_eq!(buffer_len(&advert_v3_v6()), 40);
    }

    #[test]
    fn checksum_odd_length_and_fold() {
        assert_eq!(checksum::sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        assert_eq!(checksum::fold(0x1_fffe), 0xffff);
        assert_eq!(checksum::fold(0x2_0001), 0x0003);
    }

    // ---- IPv4 header handling (RX2) ----

    #[test]
    fn ipv4_header_with_options_is_honoured__RX2() {
        let p = ipv4_with(6, 255, PROTOCOL, &V3_V4_PSEUDO_BYTES);
        let ip = Ipv4Packet::new_checked(&p[..]).unwrap();
        assert_eq!((ip.header_len(), ip.payload().len()), (24, 16));
        assert_eq!(decode_ipv4(&p).unwrap().advert, advert_v3_v4());
        let p = ipv4_with(15, 255, PROTOCOL, &V3_V4_PSEUDO_BYTES);
        assert_eq!(decode_ipv4(&p).unwrap().advert, advert_v3_v4());
    }

    #[test]
    fn ipv4_trailing_padding_is_tolerated__RX2() {
        let mut p = ipv4(&V2_BYTES);
        p.extend_from_slice(&[0xee; 18]);
        assert_eq!(decode_ipv4(&p).unwrap().advert, advert_v2(Auth::None));
    }

    #[test]
    fn rx_ipv4_bad_header_length_is_discarded__RX2() {
        let good = ipv4(&V2_BYTES);
        let mut ihl4 = good.clone();
        ihl4[0] = 0x44;
        let mut total_long = good.clone();
        total_long[2..4].copy_from_slice(&(good.len() as u16 + 1).to_be_bytes());
        let mut total_short = good.clone();
        total_short[2..4].copy_from_slice(&19u16.to_be_bytes());
        let mut ihl_beyond = good[..30].to_vec();
        ihl_beyond[0] = 0x4f;
        ihl_beyond[2..4].copy_from_slice(&30u16.to_be_bytes());
        for p in [ihl4, total_long, total_short, ihl_beyond] {
            let d = decode_ipv4(&p).unwrap_err();
            assert_eq!(d.reason, RxError::BadIpHeaderLength);
            assert_eq!(d.src, Some(IpAddr::V4(SRC4)));
        }
        let d = decode_ipv4(&good[..19]).unwrap_err();
        assert_eq!((d.reason, d.src, d.vrid), (RxError::BadIpHeaderLength, None, None));
        assert_eq!(reason(decode_ipv4(&[])), RxError::BadIpHeaderLength);
    }

    #[test]
    fn rx_not_ipv4_or_not_protocol_112_is_not_vrrp() {
        assert_eq!(reason(decode_ipv4(&ipv4_with(5, 255, 17, &V2_BYTES))), RxError::NotVrrp);
        let mut p = ipv4(&V2_BYTES);
        p[0] = 0x65;
        assert_eq!(
            decode_ipv4(&p).unwrap_err(),
            Discard {
                reason: RxError::NotVrrp,
                vrid: None,
                src: None
            }
        );
    }

    // ---- one test per discard reason ----

    #[test]
    fn rx_ttl_not_255_is_discarded__RX1() {
        for ttl in [0, 1, 64, 254] {
            let d = decode_ipv4(&ipv4_with(5, ttl, PROTOCOL, &V2_BYTES)).unwrap_err();
            assert_eq!(
                d,
                Discard {
                    reason: RxError::BadTtl,
                    vrid: Some(51),
                    src: Some(IpAddr::V4(SRC4))
                }
            );
            let d = decode_ipv6(SRC6, GROUP_V6, ttl, &V3_V6_BYTES).unwrap_err();
            assert_eq!(
                d,
                Discard {
                    reason: RxError::BadTtl,
                    vrid: Some(51),
                    src: Some(IpAddr::V6(SRC6))
                }
            );
        }
    }

    #[test]
    fn rx_truncated_packet_is_too_short__RX2() {
        // Fixed header incomplete.
        for n in 0..HEADER_LEN {
            let d = decode_ipv4(&ipv4(&V2_BYTES[..n])).unwrap_err();
            assert_eq!(
                (d.reason, d.vrid),
                (RxError::TooShort, V2_BYTES.get(1).copied().filter(|_| n > 1))
            );
            assert_eq!(reason(decode6(&V3_V6_BYTES[..n])), RxError::TooShort);
        }
        // Addresses (or v2 auth data) incomplete.
        for n in HEADER_LEN..V2_BYTES.len() {
            assert_eq!(
                reason(decode_ipv4(&ipv4(&V2_BYTES[..n]))),
                RxError::TooShort,
                "v2 len {n}"
            );
        }
        for n in HEADER_LEN..V3_V4_PSEUDO_BYTES.len() {
            assert_eq!(reason(decode_ipv4(&ipv4(&V3_V4_PSEUDO_BYTES[..n]))), RxError::TooShort);
        }
        for n in HEADER_LEN..V3_V6_BYTES.len() {
            assert_eq!(reason(decode6(&V3_V6_BYTES[..n])), RxError::TooShort);
        }
    }

    #[test]
    fn rx_version_not_2_or_3_is_discarded__RX3() {
        for v in [0u8, 1, 4, 15] {
            let mut b = V3_V4_PSEUDO_BYTES.to_vec();
            b[0] = (v << 4) | 1;
            assert_eq!(reason(decode_ipv4(&ipv4(&refill4(&b)))), RxError::BadVersion);
            let mut b = V3_V6_BYTES.to_vec();
            b[0] = (v << 4) | 1;
            assert_eq!(reason(decode6(&refill6(&b))), RxError::BadVersion);
        }
    }

    #[test]
    fn rx_v2_over_ipv6_is_family_mismatch__RX9() {
        // A well-formed v2 message with one IPv6 address and auth data.
        let mut b = vec![0x21, 51, 100, 1, 0, 1, 0, 0];
        b.extend_from_slice(&Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x100).octets());
        b.extend_from_slice(&[0; 8]);
        let b = refill6(&b);
        let d = decode6(&b).unwrap_err();
        assert_eq!((d.reason, d.vrid), (RxError::FamilyMismatch, Some(51)));
    }

    #[test]
    fn rx_type_not_1_is_discarded__RX4() {
        for t in [0u8, 2, 15] {
            let mut b = V3_V4_PSEUDO_BYTES.to_vec();
            b[0] = 0x30 | t;
            assert_eq!(reason(decode_ipv4(&ipv4(&refill4(&b)))), RxError::BadType);
            let mut b = V2_BYTES.to_vec();
            b[0] = 0x20 | t;
            assert_eq!(reason(decode_ipv4(&ipv4(&refill4(&b)))), RxError::BadType);
        }
    }

    #[test]
    fn rx_bad_checksum_v2_is_discarded__RX5() {
        let mut b = V2_BYTES.to_vec();
        b[7] ^= 1;
        assert_eq!(reason(decode_ipv4(&ipv4(&b))), RxError::BadChecksum);
        // A v2 message checksummed with a pseudo-header does not verify.
        let mut p = Packet::new_unchecked(V2_BYTES.to_vec());
        p.set_checksum(0);
        let pseudo = checksum::pseudo_header_v4(SRC4, GROUP_V4, PROTOCOL, 24);
        let c = checksum::compute(pseudo, p.into_inner().as_slice());
        let mut b = V2_BYTES.to_vec();
        b[6..8].copy_from_slice(&c.to_be_bytes());
        assert_eq!(reason(decode_ipv4(&ipv4(&b))), RxError::BadChecksum);
    }

    #[test]
    fn rx_bad_checksum_v3_ipv4_in_neither_form_is_discarded__RX5() {
        for good in [V3_V4_PSEUDO_BYTES, V3_V4_MSGONLY_BYTES] {
            let mut b = good.to_vec();
            b[6] ^= 0x80;
            assert_eq!(reason(decode_ipv4(&ipv4(&b))), RxError::BadChecksum);
            // Payload corruption too.
            let mut b = good.to_vec();
            b[15] ^= 1;
            assert_eq!(reason(decode_ipv4(&ipv4(&b))), RxError::BadChecksum);
        }
        // Pseudo-header form computed for another source does not verify.
        let mut ip = ipv4(&V3_V4_PSEUDO_BYTES);
        ip[15] = 2;
        assert_eq!(reason(decode_ipv4(&ip)), RxError::BadChecksum);
    }

    #[test]
    fn rx_v3_ipv4_accepts_pseudo_header_and_message_only_forms__RX5() {
        assert_eq!(
            decode_ipv4(&ipv4(&V3_V4_PSEUDO_BYTES)).unwrap().checksum_form,
            ChecksumForm::PseudoHeader
        );
        assert_eq!(
            decode_ipv4(&ipv4(&V3_V4_MSGONLY_BYTES)).unwrap().checksum_form,
            ChecksumForm::MessageOnly
        );
    }

    #[test]
    fn rx_bad_checksum_v3_ipv6_is_discarded__RX5() {
        let mut b = V3_V6_BYTES.to_vec();
        b[39] ^= 1;
        assert_eq!(reason(decode6(&b)), RxError::BadChecksum);
        // Message-only form is not accepted over IPv6.
        let b = refill(
            &V3_V6_BYTES,
            IpAddr::V6(SRC6),
            IpAddr::V4(GROUP_V4),
            ChecksumForm::MessageOnly,
        );
        assert_ne!(b, V3_V6_BYTES);
        assert_eq!(reason(decode6(&b)), RxError::BadChecksum);
        // Pseudo-header with another destination does not verify.
        let other = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
        assert_eq!(
            reason(decode_ipv6(SRC6, other, 255, &V3_V6_BYTES)),
            RxError::BadChecksum
        );
    }

    #[test]
    fn rx_addr_count_zero_is_discarded__RX7() {
        let b = refill4(&[0x31, 51, 100, 0, 0, 100, 0, 0]);
        assert_eq!(reason(decode_ipv4(&ipv4(&b))), RxError::AddrCountZero);
        let b = refill4(&[0x21, 51, 100, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(reason(decode_ipv4(&ipv4(&b))), RxError::AddrCountZero);
        let b = refill6(&[0x31, 51, 100, 0, 0, 100, 0, 0]);
        assert_eq!(reason(decode6(&b)), RxError::AddrCountZero);
    }

    #[test]
    fn rx_addr_count_not_matching_length_is_discarded__RX7() {
        // Count 1 but two addresses present.
        let mut b = V3_V4_PSEUDO_BYTES.to_vec();
        b[3] = 1;
        let d = decode_ipv4(&ipv4(&refill4(&b))).unwrap_err();
        assert_eq!((d.reason, d.vrid), (RxError::AddrCountMismatch, Some(51)));
        let mut b = V3_V6_BYTES.to_vec();
        b[3] = 1;
        assert_eq!(reason(decode6(&refill6(&b))), RxError::AddrCountMismatch);
        // v2 with trailing bytes inside the IP total length.
        let mut b = V2_BYTES.to_vec();
        b.extend_from_slice(&[0; 4]);
        assert_eq!(reason(decode_ipv4(&ipv4(&refill4(&b)))), RxError::AddrCountMismatch);
    }

    #[test]
    fn rx_interval_zero_is_discarded__RX8() {
        let mut b = V3_V4_PSEUDO_BYTES.to_vec();
        b[4..6].copy_from_slice(&[0xf0, 0x00]); // reserved bits set, interval 0
        assert_eq!(reason(decode_ipv4(&ipv4(&refill4(&b)))), RxError::IntervalZero);
        let mut b = V2_BYTES.to_vec();
        b[5] = 0;
        assert_eq!(reason(decode_ipv4(&ipv4(&refill4(&b)))), RxError::IntervalZero);
        let mut b = V3_V6_BYTES.to_vec();
        b[5] = 0;
        assert_eq!(reason(decode6(&refill6(&b))), RxError::IntervalZero);
    }

    #[test]
    fn rx_ipv6_source_not_link_local_is_discarded__RX9() {
        let global = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
        let b = refill(
            &V3_V6_BYTES,
            IpAddr::V6(global),
            IpAddr::V6(GROUP_V6),
            ChecksumForm::PseudoHeader,
        );
        let d = decode_ipv6(global, GROUP_V6, 255, &b).unwrap_err();
        assert_eq!(
            d,
            Discard {
                reason: RxError::SourceNotLinkLocal,
                vrid: Some(51),
                src: Some(IpAddr::V6(global))
            }
        );
        // fe80::/10 covers febf::.
        let edge = Ipv6Addr::new(0xfebf, 0, 0, 0, 0, 0, 0, 1);
        let b = refill(
            &V3_V6_BYTES,
            IpAddr::V6(edge),
            IpAddr::V6(GROUP_V6),
            ChecksumForm::PseudoHeader,
        );
        assert!(decode_ipv6(edge, GROUP_V6, 255, &b).is_ok());
    }

    #[test]
    fn rx_ipv6_first_address_global_is_accepted__RX9() {
        // keepalived 2.2.7 sends 2001:db8::100 before fe80::100 (its configured order).
        let r = decode6(&V3_V6_BYTES).unwrap();
        assert!(!is_link_local(match r.advert.addrs[0] {
            IpAddr::V6(a) => a,
            IpAddr::V4(_) => unreachable!(),
        }));
    }

    #[test]
    fn rx_reserved_bits_are_ignored__RX12() {
        let mut b = V3_V4_PSEUDO_BYTES.to_vec();
        b[4] |= 0xf0;
        let r = decode_ipv4(&ipv4(&refill4(&b))).unwrap();
        assert_eq!(r.advert, advert_v3_v4());
        let mut b = V3_V6_BYTES.to_vec();
        b[4] |= 0xa0;
        assert_eq!(decode6(&refill6(&b)).unwrap().advert, advert_v3_v6());
    }

    #[test]
    fn tx_reserved_bits_are_zero__RX12() {
        let mut a = advert_v3_v4();
        a.interval = Interval::V3(Centis::new(Centis::MAX).unwrap());
        let out = emit(&a, IpAddr::V4(SRC4), IpAddr::V4(GROUP_V4), ChecksumForm::PseudoHeader);
        assert_eq!(&out[4..6], &[0x0f, 0xff]);
        let mut p = Packet::new_unchecked(vec![0xffu8; 8]);
        p.set_max_adver_int(0xffff);
        assert_eq!(p.reserved(), 0);
    }

    #[test]
    fn discard_reports_vrid_and_source() {
        let mut b = V2_BYTES.to_vec();
        b[1] = 77;
        let d = decode_ipv4(&ipv4(&b)).unwrap_err();
        assert_eq!(
            d,
            Discard {
                reason: RxError::BadChecksum,
                vrid: Some(77),
                src: Some(IpAddr::V4(SRC4))
            }
        );
        let d = decode6(&[0x31]).unwrap_err();
        assert_eq!((d.vrid, d.src), (None, Some(IpAddr::V6(SRC6))));
    }

    // ---- emit edge cases ----

    #[test]
    fn try_emit_rejects_programming_errors() {
        let (s4, d4) = (IpAddr::V4(SRC4), IpAddr::V4(GROUP_V4));
        let (s6, d6) = (IpAddr::V6(SRC6), IpAddr::V6(GROUP_V6));
        let f = ChecksumForm::PseudoHeader;
        assert_eq!(try_emit(&advert_v3_v4(), s4, d6, f), Err(EmitError::MixedFamilies));
        assert_eq!(try_emit(&advert_v3_v4(), s6, d6, f), Err(EmitError::AddrFamily));
        assert_eq!(try_emit(&advert_v2(Auth::None), s6, d6, f), Err(EmitError::V2OverIpv6));
        let mut a = advert_v3_v4();
        a.addrs.clear();
        assert_eq!(try_emit(&a, s4, d4, f), Err(EmitError::NoAddresses));
        a.addrs = vec![v4(1); 256];
        assert_eq!(try_emit(&a, s4, d4, f), Err(EmitError::TooManyAddresses));
        let mut a = advert_v3_v4();
        a.interval = Interval::V2(Secs::new(1).unwrap());
        assert_eq!(try_emit(&a, s4, d4, f), Err(EmitError::IntervalVersion));
        assert_eq!(try_emit(&advert_v3_v6(), s6, d6, f).unwrap(), V3_V6_BYTES);
    }

    #[test]
    fn emit_is_lenient_and_never_panics() {
        let (s4, d4) = (IpAddr::V4(SRC4), IpAddr::V4(GROUP_V4));
        let f = ChecksumForm::PseudoHeader;
        // Wrong-family addresses are skipped.
        let mut a = advert_v3_v4();
        a.addrs.insert(1, IpAddr::V6(SRC6));
        assert_eq!(emit(&a, s4, d4, f), V3_V4_PSEUDO_BYTES);
        // Wrong-family destination: the group of the source's family is used.
        assert_eq!(emit(&advert_v3_v4(), s4, IpAddr::V6(GROUP_V6), f), V3_V4_PSEUDO_BYTES);
        // Interval of the other version is converted.
        let mut a = advert_v3_v4();
        a.interval = Interval::V2(Secs::new(1).unwrap());
        assert_eq!(emit(&a, s4, d4, f), V3_V4_PSEUDO_BYTES);
        let mut a = advert_v2(Auth::None);
        a.interval = Interval::V3(Centis::new(150).unwrap());
        assert_eq!(emit(&a, s4, d4, f), V2_BYTES);
        a.interval = Interval::V3(Centis::new(5).unwrap());
        assert_eq!(emit(&a, s4, d4, f)[5], 1, "rounded up to 1 s");
        // 300 addresses: capped at 255, and buffer_len agrees.
        let mut a = advert_v3_v4();
        a.addrs = vec![v4(9); 300];
        let out = emit(&a, s4, d4, f);
        assert_eq!((out[3], out.len(), buffer_len(&a)), (255, 8 + 255 * 4, 8 + 255 * 4));
        assert_eq!(decode_ipv4(&ipv4(&out)).unwrap().advert.addrs.len(), 255);
        // Empty list: a count-0 message, which receivers discard.
        a.addrs.clear();
        assert_eq!(emit(&a, s4, d4, f).len(), 8);
    }
}

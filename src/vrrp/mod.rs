//! PURE VRRP core: wire codec (`wire`), announcement frames (`announce`) and
//! the RFC 9568 state machine (`router`). Nothing in here does I/O or reads a
//! clock. This file holds the types shared by the codec, the state machine,
//! the config builder and the shell; they are the contract between them.
#![forbid(unsafe_code)]

pub mod announce;
pub mod router;
pub mod sync;
pub mod wire;

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

use crate::time::Micros;

/// VRRP protocol version of an instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Version {
    /// RFC 3768, IPv4 only, intervals in whole seconds.
    V2,
    /// RFC 9568 (5798), IPv4 and IPv6, intervals in centiseconds.
    V3,
}

impl Version {
    pub fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }
}

/// VRRPv3 advertisement interval in centiseconds, 1..=4095 (12-bit field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Centis(u16);

impl Centis {
    pub const MIN: u16 = 1;
    pub const MAX: u16 = 4095;
    /// `None` unless 1..=4095.
    pub fn new(cs: u16) -> Option<Self> {
        (Self::MIN..=Self::MAX).contains(&cs).then_some(Centis(cs))
    }
    pub fn get(self) -> u16 {
        self.0
    }
    pub fn to_micros(self) -> Micros {
        Micros(u64::from(self.0) * 10_000)
    }
}

/// VRRPv2 advertisement interval in whole seconds, 1..=255.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Secs(u8);

impl Secs {
    /// `None` for 0.
    pub fn new(s: u8) -> Option<Self> {
        (s >= 1).then_some(Secs(s))
    }
    pub fn get(self) -> u8 {
        self.0
    }
    pub fn to_micros(self) -> Micros {
        Micros(u64::from(self.0) * 1_000_000)
    }
}

/// An advertisement interval in the unit of its version. No field mixes units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Interval {
    V3(Centis),
    V2(Secs),
}

impl Interval {
    pub fn to_micros(self) -> Micros {
        match self {
            Interval::V3(c) => c.to_micros(),
            Interval::V2(s) => s.to_micros(),
        }
    }
}

/// Which checksum form a VRRPv3-over-IPv4 packet used (RX5). IPv6 always
/// uses the pseudo-header; v2 always the message-only form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ChecksumForm {
    /// RFC 8200-style pseudo-header included (keepalived and FRR default for v3/IPv4).
    #[default]
    PseudoHeader,
    /// VRRP message only, as RFC 9568 §5.2.8 reads for IPv4.
    MessageOnly,
}

/// v2 authentication (RFC 3768 §5.3.6). Type 1 = simple text password (8 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Auth {
    #[default]
    None,
    /// Simple text password, zero-padded to 8 bytes.
    Simple([u8; 8]),
}

/// A validated VRRP advertisement, independent of the wire (the `Repr`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Advert {
    pub version: Version,
    pub vrid: u8,
    pub priority: u8,
    pub interval: Interval,
    /// All of one family; the family of the IP header carrying it (RX9).
    pub addrs: Vec<IpAddr>,
    /// v2 only; `Auth::None` for v3.
    pub auth: Auth,
}

/// A decoded packet with the IP-level facts the state machine needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Received {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// TTL (IPv4) or hop limit (IPv6) as received; the decoder already
    /// rejected anything but 255.
    pub ttl: u8,
    pub checksum_form: ChecksumForm,
    pub advert: Advert,
}

/// Why a packet was discarded. One variant per RFC 9568 §7.1 reason (and the
/// instance-level checks), so each gets its own counter. The decoder produces
/// the first group; the router adds the instance-level ones.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RxError {
    // --- packet-level (wire decoder) ---
    /// RX2: shorter than the fixed header, or than the address list claims.
    TooShort,
    /// RX2: IPv4 IHL < 5, or IHL / total length beyond the buffer.
    BadIpHeaderLength,
    /// Not protocol 112 (should not reach us on a protocol-112 raw socket).
    NotVrrp,
    /// RX1: TTL / hop limit not 255.
    BadTtl,
    /// RX3: version field not 2 or 3 (or not the instance's, see `VersionMismatch`).
    BadVersion,
    /// RX4: type not 1.
    BadType,
    /// RX5: checksum does not verify in any accepted form.
    BadChecksum,
    /// RX7: count of addresses is zero.
    AddrCountZero,
    /// RX7: count of addresses does not match the length.
    AddrCountMismatch,
    /// RX8: advertisement interval 0.
    IntervalZero,
    /// RX9: IPv6 source address not link-local.
    SourceNotLinkLocal,
    /// RX9: address family of the list differs from the IP header (v2 over IPv6 etc.).
    FamilyMismatch,
    // --- instance-level (router) ---
    /// RX3: a valid packet of the other version than the instance's.
    VersionMismatch,
    /// RX6: no instance with this VRID on the interface.
    UnknownVrid,
    /// RX10 (v2): interval differs from ours.
    IntervalMismatch,
    /// RX11 (v2): authentication type or password differs.
    AuthMismatch,
    /// RX13: source is one of our own addresses.
    OwnAddress,
    /// RX14: unicast mode and the source is not a configured peer.
    NotAPeer,
    /// `allowed_peers` is set (either mode) and the source is not in it.
    PeerNotAllowed,
}

impl RxError {
    /// Stable snake_case name used for counters, logs and JSON.
    pub fn name(&self) -> &'static str {
        match self {
            RxError::TooShort => "too_short",
            RxError::BadIpHeaderLength => "bad_ip_header_length",
            RxError::NotVrrp => "not_vrrp",
            RxError::BadTtl => "bad_ttl",
            RxError::BadVersion => "bad_version",
            RxError::BadType => "bad_type",
            RxError::BadChecksum => "bad_checksum",
            RxError::AddrCountZero => "addr_count_zero",
            RxError::AddrCountMismatch => "addr_count_mismatch",
            RxError::IntervalZero => "interval_zero",
            RxError::SourceNotLinkLocal => "source_not_link_local",
            RxError::FamilyMismatch => "family_mismatch",
            RxError::VersionMismatch => "version_mismatch",
            RxError::UnknownVrid => "unknown_vrid",
            RxError::IntervalMismatch => "interval_mismatch",
            RxError::AuthMismatch => "auth_mismatch",
            RxError::OwnAddress => "own_address",
            RxError::NotAPeer => "not_a_peer",
            RxError::PeerNotAllowed => "peer_not_allowed",
        }
    }

    pub const ALL: [RxError; 19] = [
        RxError::TooShort,
        RxError::BadIpHeaderLength,
        RxError::NotVrrp,
        RxError::BadTtl,
        RxError::BadVersion,
        RxError::BadType,
        RxError::BadChecksum,
        RxError::AddrCountZero,
        RxError::AddrCountMismatch,
        RxError::IntervalZero,
        RxError::SourceNotLinkLocal,
        RxError::FamilyMismatch,
        RxError::VersionMismatch,
        RxError::UnknownVrid,
        RxError::IntervalMismatch,
        RxError::AuthMismatch,
        RxError::OwnAddress,
        RxError::NotAPeer,
        RxError::PeerNotAllowed,
    ];
}

impl std::fmt::Display for RxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A decode failure together with what could still be read of the packet,
/// so the shell can attribute it to an instance and log the sender.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discard {
    pub reason: RxError,
    /// VRID byte if the packet was long enough to hold it.
    pub vrid: Option<u8>,
    /// IP source if the IP header could be read.
    pub src: Option<IpAddr>,
}

/// Configuration of one virtual router, already validated (built by `config`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterConfig {
    pub name: String,
    pub vrid: u8,
    /// 1..=255; 255 = address owner.
    pub priority: u8,
    pub version: Version,
    /// Must match `version` (V3 ⇒ `Interval::V3`).
    pub advert_interval: Interval,
    pub preempt: bool,
    pub preempt_delay: Micros,
    /// Non-empty, one family.
    pub vips: Vec<IpAddr>,
    /// Empty ⇒ multicast.
    pub unicast_peers: Vec<IpAddr>,
    /// Sources whose adverts are accepted, in either mode; empty ⇒ everyone
    /// (in unicast mode `unicast_peers` still applies, RX14). Others are
    /// discarded as `RxError::PeerNotAllowed`.
    #[serde(default)]
    pub allowed_peers: Vec<IpAddr>,
    /// v2 only.
    pub auth: Auth,
    /// Form to send for v3/IPv4 until a peer tells us otherwise (RX5).
    pub checksum_form: ChecksumForm,
    /// Number of GARP/NA per announcement burst (keepalived garp_master_repeat, default 5).
    pub garp_master_repeat: u32,
    /// Second burst this long after master entry (keepalived garp_master_delay, default 5 s; 0 = none).
    pub garp_master_delay: Micros,
    /// Periodic announcements while master and the lower-priority re-announcement
    /// (keepalived garp_master_refresh, garp_master_refresh_repeat, garp_lower_prio_repeat).
    #[serde(default)]
    pub announce: announce::AnnounceConfig,
}

/// VRRP state of one virtual router (plus Fault: link down, SM14, or no
/// usable source address).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Initialize,
    Backup,
    Master,
    Fault,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Initialize => "init",
            State::Backup => "backup",
            State::Master => "master",
            State::Fault => "fault",
        }
    }
}

/// Everything that can happen to a virtual router.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Input {
    /// Start the router (SM1/SM2); FAULT while the link is down or there is
    /// no source address (the one given to `Router::new` or by `LocalAddr`).
    Startup,
    /// Leave (SM12): a master sends priority 0 and removes its VIPs.
    Shutdown,
    /// A packet arrived for this router: decoded, or the reason it was discarded.
    Advert(Result<Received, Discard>),
    /// A deadline announced by `poll_at` may have passed.
    Tick,
    LinkUp,
    LinkDown,
    /// Our source address changed (primary IPv4 or link-local IPv6, or the
    /// configured unicast source): sent from (TX3), compared for tie-breaks
    /// (SM10) and RX13. `None`: no usable source, so FAULT until one returns.
    LocalAddr(Option<IpAddr>),
    /// Effective priority changed (tracking); base priority stays in the config.
    SetPriority(u8),
    /// A tracker with weight 0 (keepalived: FAULT while it fails) failed
    /// (`Some(what)`) or every such tracker is fine again (`None`).
    TrackFault(Option<String>),
    /// New configuration for the same router (reload).
    Config(RouterConfig),
    // --- planned handover (make-before-break, router.rs `Handover`) ---
    /// Hand mastership over and stay BACKUP at priority 1 until `Promote`
    /// (maintenance). A master keeps its VIPs, sends priority 0 and releases
    /// only once a successor has advertised as master; with none within
    /// `timeout` it stays master (the demote failed).
    Demote {
        timeout: Micros,
    },
    /// Undo `Demote`: the configured (tracked) priority again; a demote still
    /// waiting for a successor is cancelled.
    Promote,
    /// Graceful exit (SIGTERM): as `Demote`, but ends in Initialize, and
    /// releases the VIPs at `timeout` even when no successor appeared.
    Leave {
        timeout: Micros,
    },
    /// From the instance's sync group (`sync.rs`).
    Sync(sync::Command),
}

/// Why a state changed; logged and shown by vipctl.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Startup,
    AddressOwner,
    MasterDownTimer,
    PreemptHigherPriority {
        priority: u8,
    },
    HigherPriority {
        priority: u8,
        from: IpAddr,
    },
    EqualPriorityHigherAddress {
        priority: u8,
        from: IpAddr,
    },
    Shutdown,
    LinkDown,
    LinkUp,
    /// No usable source address: we cannot advertise, so we must not be master.
    NoSourceAddress,
    /// A source address is back (with the link up): startup rules again.
    SourceAddressRestored,
    /// A tracked object with weight 0 failed (keepalived's FAULT while down).
    TrackFault {
        what: String,
    },
    /// Every weight-0 tracker is fine again: startup rules again.
    TrackRecovered,
    ConfigChange,
    PriorityChange,
    /// A planned handover (demote or SIGTERM): the successor holds the VIPs.
    HandedOver {
        to: Option<IpAddr>,
    },
    /// Moved by its sync group (`sync.rs`), and why.
    SyncGroup {
        why: String,
    },
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Startup => write!(f, "startup"),
            Reason::AddressOwner => write!(f, "address owner (priority 255)"),
            Reason::MasterDownTimer => write!(f, "master down timer"),
            Reason::PreemptHigherPriority { priority } => {
                write!(f, "preempting lower priority master with priority {priority}")
            }
            Reason::HigherPriority { priority, from } => {
                write!(f, "higher priority {priority} from {from}")
            }
            Reason::EqualPriorityHigherAddress { priority, from } => {
                write!(f, "equal priority {priority} from higher address {from}")
            }
            Reason::Shutdown => write!(f, "shutdown"),
            Reason::LinkDown => write!(f, "link down"),
            Reason::LinkUp => write!(f, "link up"),
            Reason::NoSourceAddress => write!(f, "no source address"),
            Reason::SourceAddressRestored => write!(f, "source address available"),
            Reason::TrackFault { what } => write!(f, "tracked {what} failed"),
            Reason::TrackRecovered => write!(f, "trackers recovered"),
            Reason::ConfigChange => write!(f, "config change"),
            Reason::PriorityChange => write!(f, "priority change"),
            Reason::HandedOver { to: Some(to) } => write!(f, "handed over to {to}"),
            Reason::HandedOver { to: None } => write!(f, "handover: no successor in time"),
            Reason::SyncGroup { why } => write!(f, "{why}"),
        }
    }
}

/// What the router asks the shell to do, in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Action {
    /// Send this advertisement (to the group, or to each unicast peer) using
    /// this checksum form (v3/IPv4).
    SendAdvert {
        advert: Advert,
        checksum_form: ChecksumForm,
    },
    /// Add these VIPs to the interface (netlink).
    AddVips(Vec<IpAddr>),
    /// Remove these VIPs from the interface (netlink).
    RemoveVips(Vec<IpAddr>),
    /// Send `count` gratuitous ARP / unsolicited NA for each VIP.
    Announce { vips: Vec<IpAddr>, count: u32 },
    /// The state changed; log it, run notify, tell the balancer.
    StateChange { from: State, to: State, reason: Reason },
    /// A packet was discarded for this reason (already counted by the router).
    Discarded(Discard),
    /// The master's advertised interval differs from our configuration (v3, RX10): logged, adopted.
    IntervalAdopted {
        configured: Interval,
        adopted: Interval,
        from: IpAddr,
    },
    /// An accepted advert lists other addresses than our VIPs (RFC 9568
    /// §7.1: SHOULD log; the advert is still processed). Already counted in
    /// `counters.address_list_mismatch`; the shell logs it rate-limited.
    AddressListMismatch { from: IpAddr, advertised: Vec<IpAddr> },
    /// Priority 255 from a source that is not one of our VIPs: the sender
    /// claims to own addresses it does not hold (§6.4 / §7.1). Processed as
    /// usual (a 255 master still wins); already counted in
    /// `counters.foreign_owner_adverts`; the shell logs it rate-limited.
    ForeignOwner { from: IpAddr },
    /// A planned handover ended (successor heard and VIPs released, or not).
    HandedOver(HandoverOutcome),
}

/// How a planned handover (`Input::Demote` / `Input::Leave`) ended; times
/// from the handover's start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoverOutcome {
    /// The router whose advert as master we heard (`None`: nobody in time).
    pub successor: Option<IpAddr>,
    /// Until the successor's first advert as master.
    pub successor_after: Option<Micros>,
    /// Until we removed our VIPs (`None`: kept, still master).
    pub released_after: Option<Micros>,
    /// `Leave` (true) or `Demote`.
    pub leave: bool,
}

//! Raw VRRP (IP protocol 112) sockets, one per interface and address family.
//!
//! Per `linux-notes.md`: bound to the interface (SO_BINDTODEVICE), joined to
//! 224.0.0.18 / ff02::12 on that interface only, IP_MULTICAST_ALL off,
//! multicast loop off, TTL / hop limit 255 for multicast and unicast, TOS /
//! traffic class 0xc0. IPv4 receives carry the IP header (the decoder checks
//! TTL from it); IPv6 receives report the hop limit and destination through
//! control messages. The source address is chosen per packet with
//! IP_PKTINFO / IPV6_PKTINFO.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};

use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn, SockaddrIn6,
};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;

use crate::vrrp::wire::{GROUP_V4, GROUP_V6, PROTOCOL};

pub use crate::vrrp::wire::Family;

/// What a receive returned besides the bytes.
#[derive(Clone, Copy, Debug)]
pub struct RecvMeta {
    pub len: usize,
    /// IPv6 only (IPv4 sources are read from the IP header by the decoder).
    pub src: Option<IpAddr>,
    /// IPv6 only, from IPV6_PKTINFO.
    pub dst: Option<IpAddr>,
    /// IPv6 only, from IPV6_HOPLIMIT. `None` if the kernel did not report it.
    pub hop_limit: Option<u8>,
}

pub struct VrrpSocket {
    fd: AsyncFd<Socket>,
    pub family: Family,
    pub ifindex: u32,
}

fn io_err(e: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

impl VrrpSocket {
    /// Open a raw VRRP socket on `ifname` (index `ifindex`) for `family`,
    /// joined to the VRRP group on that interface.
    pub fn open(ifname: &str, ifindex: u32, family: Family) -> io::Result<VrrpSocket> {
        Self::open_with(ifname, ifindex, family, true)
    }

    /// A socket that only sends from `ifname` (a `use_vmac` macvlan): it
    /// joins no group, so no advert is queued on it unread.
    pub fn open_send_only(ifname: &str, ifindex: u32, family: Family) -> io::Result<VrrpSocket> {
        Self::open_with(ifname, ifindex, family, false)
    }

    fn open_with(ifname: &str, ifindex: u32, family: Family, join: bool) -> io::Result<VrrpSocket> {
        let proto = Protocol::from(i32::from(PROTOCOL));
        let sock = match family {
            Family::V4 => Socket::new(Domain::IPV4, Type::RAW, Some(proto))?,
            Family::V6 => Socket::new(Domain::IPV6, Type::RAW, Some(proto))?,
        };
        sock.bind_device(Some(ifname.as_bytes()))?;
        match family {
            Family::V4 => {
                sock.set_multicast_all_v4(false)?;
                if join {
                    sock.join_multicast_v4_n(&GROUP_V4, &socket2::InterfaceIndexOrAddress::Index(ifindex))?;
                }
                set_multicast_if_index_v4(sock.as_raw_fd(), ifindex)?;
                sock.set_multicast_ttl_v4(255)?;
                sock.set_ttl_v4(255)?;
                sock.set_tos_v4(0xc0)?;
                sock.set_multicast_loop_v4(false)?;
            }
            Family::V6 => {
                sock.set_multicast_all_v6(false)?;
                if join {
                    sock.join_multicast_v6(&GROUP_V6, ifindex)?;
                }
                sock.set_multicast_if_v6(ifindex)?;
                sock.set_multicast_hops_v6(255)?;
                sock.set_unicast_hops_v6(255)?;
                sock.set_tclass_v6(0xc0)?;
                sock.set_multicast_loop_v6(false)?;
                setsockopt(&sock, sockopt::Ipv6RecvHopLimit, &true).map_err(io_err)?;
                setsockopt(&sock, sockopt::Ipv6RecvPacketInfo, &true).map_err(io_err)?;
            }
        }
        sock.set_nonblocking(true)?;
        // SAFETY: we own `sock`; it stays open for as long as the AsyncFd lives
        // and is only closed when the AsyncFd (and with it the socket) is dropped.
        let fd = unsafe { AsyncFd::register(sock) }.map_err(|e| e.into_parts().1)?;
        Ok(VrrpSocket { fd, family, ifindex })
    }

    /// Receive one packet into `buf`.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<RecvMeta> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|inner| recv_once(inner.get_ref().as_raw_fd(), self.family, buf)) {
                Ok(res) => return res,
                Err(_would_block) => continue,
            }
        }
    }

    /// Send one VRRP message (no IP header) from `src` to `dst` on our interface.
    pub fn send(&self, payload: &[u8], src: IpAddr, dst: IpAddr) -> io::Result<()> {
        let fd = self.fd.get_ref().as_raw_fd();
        let iov = [IoSlice::new(payload)];
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let info = libc::in_pktinfo {
                    ipi_ifindex: self.ifindex as libc::c_int,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from(s).to_be(),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                let cmsg = [ControlMessage::Ipv4PacketInfo(&info)];
                let to = SockaddrIn::from(SocketAddrV4::new(d, 0));
                sendmsg(fd, &iov, &cmsg, MsgFlags::MSG_DONTWAIT, Some(&to)).map_err(io_err)?;
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr { s6_addr: s.octets() },
                    ipi6_ifindex: self.ifindex,
                };
                let cmsg = [ControlMessage::Ipv6PacketInfo(&info)];
                let scope = if is_link_scope(&d) { self.ifindex } else { 0 };
                let to = SockaddrIn6::from(SocketAddrV6::new(d, 0, 0, scope));
                sendmsg(fd, &iov, &cmsg, MsgFlags::MSG_DONTWAIT, Some(&to)).map_err(io_err)?;
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "source and destination of different families",
                ))
            }
        }
        Ok(())
    }
}

fn is_link_scope(a: &Ipv6Addr) -> bool {
    crate::vrrp::wire::is_link_local(*a) || (a.segments()[0] & 0xff0f) == 0xff02
}

fn recv_once(fd: RawFd, family: Family, buf: &mut [u8]) -> io::Result<RecvMeta> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo, libc::c_int);
    match family {
        Family::V4 => {
            let msg = recvmsg::<SockaddrIn>(fd, &mut iov, None, MsgFlags::MSG_DONTWAIT).map_err(io_err)?;
            Ok(RecvMeta {
                len: msg.bytes,
                src: None,
                dst: None,
                hop_limit: None,
            })
        }
        Family::V6 => {
            let msg = recvmsg::<SockaddrIn6>(fd, &mut iov, Some(&mut cmsg), MsgFlags::MSG_DONTWAIT).map_err(io_err)?;
            let mut meta = RecvMeta {
                len: msg.bytes,
                src: msg.address.map(|a| IpAddr::V6(a.ip())),
                dst: None,
                hop_limit: None,
            };
            if let Ok(cmsgs) = msg.cmsgs() {
                for c in cmsgs {
                    match c {
                        ControlMessageOwned::Ipv6HopLimit(h) => meta.hop_limit = u8::try_from(h).ok(),
                        ControlMessageOwned::Ipv6PacketInfo(info) => {
                            meta.dst = Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)))
                        }
                        _ => {}
                    }
                }
            }
            Ok(meta)
        }
    }
}

/// IP_MULTICAST_IF by interface index (ip_mreqn), which socket2 only offers by address.
fn set_multicast_if_index_v4(fd: RawFd, ifindex: u32) -> io::Result<()> {
    let mreqn = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr { s_addr: 0 },
        imr_address: libc::in_addr {
            s_addr: u32::from(Ipv4Addr::UNSPECIFIED).to_be(),
        },
        imr_ifindex: ifindex as libc::c_int,
    };
    // SAFETY: setsockopt with a pointer to a live, correctly sized ip_mreqn.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            &mreqn as *const libc::ip_mreqn as *const libc::c_void,
            std::mem::size_of::<libc::ip_mreqn>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

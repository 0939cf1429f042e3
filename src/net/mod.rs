//! SHELL: the kernel side of VRRP. Raw protocol-112 sockets (`vrrp_socket`),
//! rtnetlink for VIPs and link/address facts (`netlink`), and AF_PACKET for
//! gratuitous ARP / unsolicited NA (`announce`).

pub mod announce;
pub mod inet_conf;
pub mod netlink;
pub mod timer;
pub mod vmac;
pub mod vrrp_socket;

//! Bringing up the loopback interface of the calling thread's network
//! namespace with one rtnetlink request, the way `ip link set lo up` does,
//! without starting a process.

use std::io;
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};

/// The kernel gives the loopback interface this index in every network
/// namespace (`LOOPBACK_IFINDEX`): it is registered first.
const LOOPBACK_INDEX: i32 = 1;

/// `struct nlmsghdr` (16 bytes) followed by `struct ifinfomsg` (16 bytes).
const REQUEST_LEN: usize = 32;

/// Sets `IFF_UP` on `lo` in the calling thread's network namespace, so that
/// 127.0.0.1 and ::1 work there.
pub(crate) fn up() -> io::Result<()> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    let request = set_link_up(LOOPBACK_INDEX);
    sendto(
        fd.as_raw_fd(),
        &request,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )?;
    let mut reply = [0u8; 1024];
    let len = recv(fd.as_raw_fd(), &mut reply, MsgFlags::empty())?;
    parse_ack(&reply[..len])
}

/// An `RTM_NEWLINK` request without `NLM_F_CREATE`, which changes an
/// existing link: `change = IFF_UP` says which flag to touch, `flags = IFF_UP`
/// its new value. `NLM_F_ACK` asks for an answer even on success.
fn set_link_up(index: i32) -> [u8; REQUEST_LEN] {
    let mut msg = [0u8; REQUEST_LEN];
    let flags = u16::try_from(libc::NLM_F_REQUEST | libc::NLM_F_ACK).unwrap_or(5);
    let iff_up = u32::try_from(libc::IFF_UP).unwrap_or(1);
    // struct nlmsghdr
    msg[0..4].copy_from_slice(&(REQUEST_LEN as u32).to_ne_bytes());
    msg[4..6].copy_from_slice(&libc::RTM_NEWLINK.to_ne_bytes());
    msg[6..8].copy_from_slice(&flags.to_ne_bytes());
    msg[8..12].copy_from_slice(&1u32.to_ne_bytes()); // sequence number
    msg[12..16].copy_from_slice(&0u32.to_ne_bytes()); // port id: the kernel assigns it
                                                      // struct ifinfomsg: family AF_UNSPEC, padding, type 0 (bytes 16..20)
    msg[20..24].copy_from_slice(&index.to_ne_bytes());
    msg[24..28].copy_from_slice(&iff_up.to_ne_bytes()); // flags
    msg[28..32].copy_from_slice(&iff_up.to_ne_bytes()); // change mask
    msg
}

/// Reads the kernel's `NLMSG_ERROR` answer: error 0 is the acknowledgement,
/// a negative number is the errno of the failure.
fn parse_ack(reply: &[u8]) -> io::Result<()> {
    let malformed = || io::Error::new(io::ErrorKind::InvalidData, "malformed rtnetlink answer");
    let kind = reply
        .get(4..6)
        .and_then(|b| <[u8; 2]>::try_from(b).ok())
        .map(u16::from_ne_bytes)
        .ok_or_else(malformed)?;
    if i32::from(kind) != libc::NLMSG_ERROR {
        return Err(malformed());
    }
    let error = reply
        .get(16..20)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(i32::from_ne_bytes)
        .ok_or_else(malformed)?;
    match error {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(-e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_an_rtm_newlink_for_index_one() {
        let msg = set_link_up(LOOPBACK_INDEX);
        assert_eq!(u32::from_ne_bytes(msg[0..4].try_into().unwrap()), 32);
        assert_eq!(
            u16::from_ne_bytes(msg[4..6].try_into().unwrap()),
            libc::RTM_NEWLINK
        );
        assert_eq!(i32::from_ne_bytes(msg[20..24].try_into().unwrap()), 1);
    }

    #[test]
    fn acks_and_errors_are_told_apart() {
        let mut reply = [0u8; 36];
        reply[4..6].copy_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
        assert!(parse_ack(&reply).is_ok());
        reply[16..20].copy_from_slice(&(-libc::EPERM).to_ne_bytes());
        let err = parse_ack(&reply).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM));
        assert!(parse_ack(&reply[..10]).is_err());
    }
}

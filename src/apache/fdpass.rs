//! Descriptor passing over a Unix stream socket (`SCM_RIGHTS`): how a daemon
//! hands the file of a `wsgi.file_wrapper` response to the Apache child, which
//! then sends it with a file bucket instead of copying it through the socket.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

/// Descriptors one `recvmsg` accepts; the daemon sends one per message.
const FDS_PER_MESSAGE: usize = 4;

/// Control-message buffer, aligned for `cmsghdr`.
#[repr(C, align(8))]
struct ControlBuffer([u8; 64]);

/// Writes all of `data`, with a copy of `fd` (which the caller holds open) attached to its first byte.
pub fn send_with_fd(stream: &UnixStream, data: &[u8], fd: RawFd) -> io::Result<()> {
    let mut control = ControlBuffer([0; 64]);
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain data; every pointer set below outlives the sendmsg call,
    // and the control message written fits the buffer (CMSG_SPACE of one int ≤ 64).
    let sent = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.0.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) as usize;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut libc::c_int, fd);
        loop {
            let n = libc::sendmsg(stream.as_raw_fd(), &msg, libc::MSG_NOSIGNAL);
            if n >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                break n;
            }
        }
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let rest = &data[sent as usize..];
    if !rest.is_empty() {
        io::Write::write_all(&mut &*stream, rest)?;
    }
    Ok(())
}

/// Reads into `buf` like `read`; descriptors that came with the data are
/// appended to `fds` (close-on-exec, closed when dropped).
pub fn recv_with_fds(stream: &UnixStream, buf: &mut [u8], fds: &mut VecDeque<OwnedFd>) -> io::Result<usize> {
    let mut control = ControlBuffer([0; 64]);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; buf and control outlive the call and the kernel
    // writes at most their declared lengths.
    let (n, msg) = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.0.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = libc::CMSG_SPACE((FDS_PER_MESSAGE * std::mem::size_of::<libc::c_int>()) as u32) as usize;
        loop {
            let n = libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
            if n >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                break (n, msg);
            }
        }
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: walks the control messages the kernel just wrote into `control`;
    // each SCM_RIGHTS entry holds descriptors that are now ours.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg) as *const libc::c_int;
                let count = ((*cmsg).cmsg_len - libc::CMSG_LEN(0) as usize) / std::mem::size_of::<libc::c_int>();
                for i in 0..count {
                    fds.push_back(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::other("more descriptors arrived than expected"));
    }
    Ok(n as usize)
}

/// The size of `fd` (held open by the caller) if it is a regular file.
pub fn regular_file_size(fd: RawFd) -> Option<u64> {
    // SAFETY: stat is plain data filled by fstat on a descriptor we hold.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let ok = unsafe { libc::fstat(fd, &mut st) } == 0;
    (ok && st.st_mode & libc::S_IFMT == libc::S_IFREG).then_some(st.st_size as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};

    #[test]
    fn a_descriptor_arrives_with_its_bytes() {
        let (a, b) = UnixStream::pair().unwrap();
        let file = file_holding(b"hello file");
        send_with_fd(&a, b"frame", file.as_raw_fd()).unwrap();
        let mut fds = VecDeque::new();
        let mut buf = [0u8; 16];
        let n = recv_with_fds(&b, &mut buf, &mut fds).unwrap();
        assert_eq!(&buf[..n], b"frame");
        assert_eq!(fds.len(), 1);
        let received = fds.pop_front().unwrap();
        assert_eq!(regular_file_size(received.as_raw_fd()), Some(10));
        let mut f = std::fs::File::from(received);
        let mut s = String::new();
        f.rewind().unwrap();
        f.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello file");
    }

    #[test]
    fn plain_bytes_bring_no_descriptor_and_sockets_are_not_files() {
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(b"xyz").unwrap();
        let mut fds = VecDeque::new();
        let mut buf = [0u8; 8];
        assert_eq!(recv_with_fds(&b, &mut buf, &mut fds).unwrap(), 3);
        assert!(fds.is_empty());
        assert_eq!(regular_file_size(b.as_raw_fd()), None);
    }

    /// An unlinked temporary file holding `data`.
    fn file_holding(data: &[u8]) -> std::fs::File {
        let path = std::env::temp_dir().join(format!("fdpass-test-{}", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        f.write_all(data).unwrap();
        f
    }
}

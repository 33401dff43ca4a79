//! Zero-copy capture: an AF_PACKET socket with a PACKET_MMAP (TPACKET_V2)
//! receive ring, fed only by what the `filter` program lets through.
//!
//! All the capture's `unsafe` lives here. The kernel and this process share
//! the ring; each frame slot belongs to exactly one side at a time, and the
//! slot's `tp_status` word says which: `TP_STATUS_USER` → ours until we
//! store `TP_STATUS_KERNEL`.
//!
//! Why TPACKET_V2 and not V3: V3 hands frames over a whole block at a time,
//! and a block is retired only when it is full or when its timeout expires
//! (at least 1 ms, 8 ms and more by default). A lone knock frame would sit
//! in a half-empty block for that long. V2 hands over each frame the moment
//! it is written, so `poll` wakes us within microseconds.
//!
//! Interface trouble (observed on Linux 6.x, see tests/capture.rs): when the
//! bound interface goes down the kernel unhooks the socket, sets its error
//! to `ENETDOWN` and `poll` reports `POLLERR`; `wait` returns that error
//! once. When the link comes back up the kernel re-hooks the socket and the
//! same ring keeps working. When the interface is deleted the kernel reports
//! the very same `ENETDOWN` and then silently forgets the binding for good;
//! so after an `ENETDOWN` every `wait` asks the kernel whether the ifindex
//! still exists, and once it does not, `wait` returns `ENODEV` from then on:
//! the caller should log, wait for the interface and re-open (a re-created
//! interface gets a new ifindex). A ring on every interface (ifindex 0) is
//! not affected by any of this.

use crate::capture::filter::Insn;
use crate::sys::syscall;
use memmap2::{MmapOptions, MmapRaw};
use socket2::{Domain, Protocol, SockFilter, Socket, Type};
use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Ring geometry and how much of each frame is copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingConfig {
    /// Bytes per slot; a multiple of 16 holding the tpacket header, the
    /// sockaddr_ll, alignment padding and `snaplen` bytes of frame.
    pub frame_size: u32,
    /// Number of slots (rounded up to fill whole blocks).
    pub frame_count: u32,
    /// Bytes of each frame copied into the ring, from the link header on.
    /// Must match the `snaplen` the filter returns.
    pub snaplen: u32,
}

/// Space a slot needs before the frame bytes, for any link header up to 16
/// bytes: TPACKET_ALIGN(TPACKET2_HDRLEN + 16). The kernel puts the network
/// header at this offset and the link header just before it.
pub const FRAME_OVERHEAD: u32 = 80;

impl Default for RingConfig {
    /// 16384 slots of 256 bytes = 4 MiB. At 300,000 frames/s to a knock
    /// port that is 55 ms of slack for a reader that needs well under a
    /// microsecond per frame; 160 bytes of snap holds Ethernet + a QinQ tag
    /// + IPv6 + a few extension headers + TCP with options.
    fn default() -> Self {
        RingConfig {
            frame_size: 256,
            frame_count: 16384,
            snaplen: 160,
        }
    }
}

/// What the kernel tells us about one captured frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameMeta {
    /// Index of the interface the frame arrived on (sll_ifindex).
    pub ifindex: i32,
    /// ARPHRD_* link type: 1 Ethernet, 772 loopback, …
    pub hatype: u16,
    /// PACKET_HOST, PACKET_BROADCAST, … never PACKET_OUTGOING.
    pub pkttype: u8,
    /// Ethertype (sll_protocol), host order; the inner one for VLAN frames.
    pub protocol: u16,
    /// The outer VLAN tag the kernel moved out of the frame bytes.
    pub vlan_tci: Option<u16>,
    /// Its tag protocol (0x8100 802.1Q, 0x88a8 802.1ad); 0x8100 when the
    /// kernel does not say.
    pub vlan_tpid: u16,
    /// Length of the frame on the wire.
    pub wire_len: u32,
    /// Bytes captured (the slice handed to the callback).
    pub snap_len: u32,
    /// The kernel dropped frames since the counters were last read.
    pub losing: bool,
    /// Kernel receive time (CLOCK_REALTIME since the epoch).
    pub timestamp: Duration,
}

/// Totals since the ring was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RingStats {
    /// Frames that passed the filter, including dropped ones.
    pub packets: u64,
    /// Frames that passed the filter but found the ring full.
    pub drops: u64,
}

/// An open capture socket and its mapped receive ring: [`wait`](Self::wait)
/// for frames, [`drain`](Self::drain) them; see the module docs.
pub struct Ring {
    // Declared before `sock` so it is unmapped before the socket closes.
    map: MmapRaw,
    sock: Socket,
    frame_size: usize,
    block_size: usize,
    frames_per_block: usize,
    frame_count: usize,
    /// Next slot to look at; the kernel fills slots in order.
    next: usize,
    totals: RingStats,
    ifindex: u32,
    /// The link went down (ENETDOWN) and no frame has arrived since.
    down: bool,
    /// The interface is gone: every `wait` fails with ENODEV.
    gone: bool,
}

/// Offset of the sockaddr_ll in a slot: TPACKET_ALIGN(sizeof tpacket2_hdr).
const SLL_OFFSET: usize = (size_of::<libc::tpacket2_hdr>() + 15) & !15;

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.to_owned())
}

fn setopt<T>(sock: &Socket, level: i32, name: i32, value: &T) -> io::Result<()> {
    syscall!(setsockopt(
        sock.as_raw_fd(),
        level,
        name,
        // SAFETY (of the call): `value` is a live, initialised T and the
        // length passed is exactly its size.
        (value as *const T).cast(),
        size_of::<T>() as libc::socklen_t,
    ))
    .map(drop)
}

fn page_size() -> io::Result<usize> {
    // SAFETY (of the call): sysconf takes no pointers.
    let n = syscall!(sysconf(libc::_SC_PAGESIZE))?;
    usize::try_from(n).map_err(|_| invalid("bad page size"))
}

fn to_sock_filter(filter: &[Insn]) -> Vec<SockFilter> {
    filter
        .iter()
        .map(|i| SockFilter::new(i.code, i.jt, i.jf, i.k))
        .collect()
}

impl Ring {
    /// Opens a capture ring on interface `ifindex` (0 = every interface of
    /// the namespace, like `tcpdump -i any`) that receives only what
    /// `filter` accepts.
    pub fn open(ifindex: u32, filter: &[Insn], cfg: RingConfig) -> io::Result<Ring> {
        if cfg.snaplen == 0 || cfg.frame_count == 0 {
            return Err(invalid("snaplen and frame_count must be positive"));
        }
        if cfg.frame_size % 16 != 0 || cfg.frame_size < FRAME_OVERHEAD.saturating_add(cfg.snaplen) {
            return Err(invalid(
                "frame_size must be a multiple of 16 and at least snaplen + 80",
            ));
        }
        let ifindex = i32::try_from(ifindex).map_err(|_| invalid("bad ifindex"))?;
        let frame_size = cfg.frame_size as usize;
        let page = page_size()?;
        // Blocks are whole pages; slots never straddle a block.
        let block_size = frame_size.div_ceil(page) * page;
        let frames_per_block = block_size / frame_size;
        let block_nr = (cfg.frame_count as usize).div_ceil(frames_per_block);
        let frame_count = block_nr * frames_per_block;
        let map_len = block_nr
            .checked_mul(block_size)
            .ok_or_else(|| invalid("ring too large"))?;
        let req = libc::tpacket_req {
            tp_block_size: u32::try_from(block_size).map_err(|_| invalid("block too large"))?,
            tp_block_nr: u32::try_from(block_nr).map_err(|_| invalid("ring too large"))?,
            tp_frame_size: cfg.frame_size,
            tp_frame_nr: u32::try_from(frame_count).map_err(|_| invalid("ring too large"))?,
        };

        // Order matters. Protocol 0: the socket is not hooked into the
        // receive path yet, so no frame can arrive unfiltered or before the
        // ring exists. The filter goes first for the same reason. The
        // version must be set before the ring is created (the kernel refuses
        // to change it afterwards). The ring must exist before `bind` hooks
        // the socket in, or early frames would land in the ordinary receive
        // queue that nobody reads. IGNORE_OUTGOING also before `bind`, so the
        // host's own frames never show up.
        let sock = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(0)))?;
        sock.attach_filter(&to_sock_filter(filter))?;
        let version = libc::tpacket_versions::TPACKET_V2 as libc::c_int;
        setopt(&sock, libc::SOL_PACKET, libc::PACKET_VERSION, &version)?;
        setopt(&sock, libc::SOL_PACKET, libc::PACKET_RX_RING, &req)?;
        let map = MmapOptions::new()
            .len(map_len)
            .populate()
            .map_raw(sock.as_raw_fd())?;
        match setopt(&sock, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &1i32) {
            Ok(()) => {}
            // Kernels before 4.20: the filter and `drain` skip them instead.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOPROTOOPT | libc::EINVAL)) => {
                crate::debug!("PACKET_IGNORE_OUTGOING unsupported: {e}")
            }
            Err(e) => return Err(e),
        }
        // SAFETY: an all-zero sockaddr_ll is a valid value; fields set below.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        addr.sll_ifindex = ifindex;
        syscall!(bind(
            sock.as_raw_fd(),
            // SAFETY (of the call): `addr` outlives the call and the length
            // is its exact size.
            (&addr as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        ))?;
        Ok(Ring {
            map,
            sock,
            frame_size,
            block_size,
            frames_per_block,
            frame_count,
            next: 0,
            totals: RingStats::default(),
            ifindex: ifindex as u32,
            down: false,
            gone: false,
        })
    }

    /// Replaces the filter. SO_ATTACH_FILTER swaps the program atomically:
    /// every frame sees either the old or the new one.
    pub fn set_filter(&self, filter: &[Insn]) -> io::Result<()> {
        self.sock.attach_filter(&to_sock_filter(filter))
    }

    /// The socket's descriptor, to poll it together with others.
    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// Slots in the ring (`frame_count` rounded up to whole blocks).
    pub fn capacity(&self) -> usize {
        self.frame_count
    }

    /// Waits up to `timeout_ms` (-1 = forever) for a frame. `Ok(false)` on
    /// timeout or when a signal interrupted the wait. `Err(ENETDOWN)` once
    /// when the bound interface goes down; `Err(ENODEV)` on every call once
    /// it has been deleted (re-open then). See the module docs.
    pub fn wait(&mut self, timeout_ms: i32) -> io::Result<bool> {
        self.check_gone()?;
        if self.ready() {
            self.down = false;
            return Ok(true);
        }
        let mut pfd = libc::pollfd {
            fd: self.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY (of the call): one valid pollfd, count 1.
        match syscall!(poll(&mut pfd, 1, timeout_ms)) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(false),
            Err(e) => return Err(e),
        }
        if pfd.revents & libc::POLLNVAL != 0 {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        if pfd.revents & libc::POLLERR != 0 {
            let err = self
                .sock
                .take_error()?
                .unwrap_or_else(|| io::Error::other("capture socket reported POLLERR"));
            if err.raw_os_error() == Some(libc::ENETDOWN) {
                self.down = true;
                self.check_gone()?;
            }
            return Err(err);
        }
        if self.ready() {
            self.down = false;
            return Ok(true);
        }
        self.check_gone()?;
        Ok(false)
    }

    /// After ENETDOWN: has the interface been deleted?
    fn check_gone(&mut self) -> io::Result<()> {
        if !self.gone && self.down && self.ifindex != 0 && !self.interface_exists()? {
            self.gone = true;
        }
        if self.gone {
            return Err(io::Error::from_raw_os_error(libc::ENODEV));
        }
        Ok(())
    }

    /// Asks the socket's own network namespace (not the calling thread's)
    /// whether our ifindex still names an interface.
    fn interface_exists(&self) -> io::Result<bool> {
        // SAFETY: an all-zero ifreq is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        req.ifr_ifru.ifru_ifindex = self.ifindex as libc::c_int;
        // SAFETY (of the call): SIOCGIFNAME reads the ifindex from and
        // writes a NUL-terminated name into `req`, which is live and
        // exactly an ifreq.
        match syscall!(ioctl(self.fd(), libc::SIOCGIFNAME, &mut req)) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Calls `f` for each ready frame, in arrival order, at most `budget`
    /// slots, and returns each slot to the kernel right after. Returns how
    /// many slots were consumed; outgoing frames (should any slip through)
    /// consume a slot but never reach `f`.
    pub fn drain(&mut self, budget: usize, mut f: impl FnMut(&FrameMeta, &[u8])) -> usize {
        let mut done = 0;
        while done < budget {
            let slot = self.slot(self.next);
            let status = self.status(slot);
            let word = status.load(Ordering::Acquire);
            if word & libc::TP_STATUS_USER == 0 {
                break;
            }
            // SAFETY: the slot is ours (TP_STATUS_USER, observed with
            // Acquire, so the kernel's writes to it are visible) and lies
            // inside the mapping, 16-byte aligned (page-aligned mapping,
            // page-multiple blocks, frame_size a multiple of 16).
            let hdr = unsafe { slot.cast::<libc::tpacket2_hdr>().read() };
            // SAFETY: as above; the sockaddr_ll follows the header at
            // SLL_OFFSET < FRAME_OVERHEAD ≤ frame_size.
            let sll = unsafe { slot.add(SLL_OFFSET).cast::<libc::sockaddr_ll>().read() };
            let mac = usize::from(hdr.tp_mac);
            let snap = hdr.tp_snaplen as usize;
            // The kernel never writes a frame outside its slot; checked
            // anyway so a surprise cannot turn into an out-of-bounds slice.
            let fits = mac >= SLL_OFFSET && mac.saturating_add(snap) <= self.frame_size;
            if sll.sll_pkttype != libc::PACKET_OUTGOING && fits {
                let meta = FrameMeta {
                    ifindex: sll.sll_ifindex,
                    hatype: sll.sll_hatype,
                    pkttype: sll.sll_pkttype,
                    protocol: u16::from_be(sll.sll_protocol),
                    vlan_tci: (word & libc::TP_STATUS_VLAN_VALID != 0).then_some(hdr.tp_vlan_tci),
                    vlan_tpid: if word & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                        hdr.tp_vlan_tpid
                    } else {
                        crate::wire::ethernet::ethertype::VLAN
                    },
                    wire_len: hdr.tp_len,
                    snap_len: hdr.tp_snaplen,
                    losing: word & libc::TP_STATUS_LOSING != 0,
                    timestamp: Duration::new(u64::from(hdr.tp_sec), hdr.tp_nsec.min(999_999_999)),
                };
                // SAFETY: `mac..mac + snap` lies inside the slot (checked
                // above) and the kernel does not write the slot until we
                // hand it back below, after the borrow has ended.
                let bytes = unsafe { std::slice::from_raw_parts(slot.add(mac), snap) };
                f(&meta, bytes);
            }
            // Release: every read of the slot above happens before the
            // kernel can see it free and overwrite it.
            status.store(libc::TP_STATUS_KERNEL, Ordering::Release);
            self.next = (self.next + 1) % self.frame_count;
            // The kernel wrote the next slots from another core: start
            // fetching the one after next (header and frame start) now.
            let ahead = self.slot((self.next + 1) % self.frame_count);
            crate::sys::prefetch(ahead);
            crate::sys::prefetch(ahead.wrapping_add(FRAME_OVERHEAD as usize));
            done += 1;
        }
        done
    }

    /// Totals since open. The kernel resets its counters on every read, so
    /// they are accumulated here.
    pub fn stats(&mut self) -> io::Result<RingStats> {
        let mut st = libc::tpacket_stats {
            tp_packets: 0,
            tp_drops: 0,
        };
        let mut len = size_of::<libc::tpacket_stats>() as libc::socklen_t;
        syscall!(getsockopt(
            self.fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            // SAFETY (of the call): `st` and `len` are live and `len` is
            // the size of `st`.
            (&mut st as *mut libc::tpacket_stats).cast(),
            &mut len,
        ))?;
        // The kernel reports tp_packets with the drops already included.
        self.totals.packets += u64::from(st.tp_packets);
        self.totals.drops += u64::from(st.tp_drops);
        Ok(self.totals)
    }

    fn ready(&self) -> bool {
        let word = self.status(self.slot(self.next)).load(Ordering::Acquire);
        word & libc::TP_STATUS_USER != 0
    }

    fn slot(&self, index: usize) -> *mut u8 {
        let offset = index / self.frames_per_block * self.block_size
            + index % self.frames_per_block * self.frame_size;
        debug_assert!(offset + self.frame_size <= self.map.len());
        // SAFETY: index < frame_count, so the offset stays inside the
        // mapping (block_nr * block_size bytes).
        unsafe { self.map.as_mut_ptr().add(offset) }
    }

    fn status(&self, slot: *mut u8) -> &AtomicU32 {
        // SAFETY: tp_status is the slot's first field, 4-byte aligned (see
        // `drain`), lives as long as the mapping (and so `&self`), and the
        // kernel accesses it only atomically (READ_ONCE/WRITE_ONCE + barriers).
        unsafe { AtomicU32::from_ptr(slot.cast::<u32>()) }
    }
}

/// Shows the geometry, position and state, not the mapped frames.
impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("fd", &self.sock.as_raw_fd())
            .field("ifindex", &self.ifindex)
            .field("frame_size", &self.frame_size)
            .field("frame_count", &self.frame_count)
            .field("next", &self.next)
            .field("totals", &self.totals)
            .field("down", &self.down)
            .field("gone", &self.gone)
            .finish_non_exhaustive()
    }
}

impl AsRawFd for Ring {
    fn as_raw_fd(&self) -> RawFd {
        self.fd()
    }
}

impl AsFd for Ring {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

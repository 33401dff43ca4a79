//! The classic BPF program attached to the capture socket: only IPv4/IPv6
//! TCP and UDP frames to a knock (protocol, destination port) ever reach the
//! ring, and only their first `snaplen` bytes.
//!
//! Ports are given as ranges ([`build_ranges`]): a rotating event's
//! template range (`tcp:40000-40999:s`) costs two comparisons whatever its
//! width, and the program stays the same while the windows change.
//!
//! The program must work on an `any` socket, where every interface brings
//! its own link header. It therefore never reads at fixed Ethernet offsets:
//! the ethertype comes from the ancillary load `SKF_AD_PROTOCOL`
//! (`skb->protocol`) and the IP headers are read relative to the network
//! header (`SKF_NET_OFF`). Header offsets, protocol numbers and ethertypes
//! are the decoder's (`crate::wire`), not copies.
//!
//! VLAN: the kernel moves the outer tag into skb metadata before AF_PACKET
//! sees the frame, so `skb->protocol` is already the inner ethertype. A
//! frame with a second tag (QinQ) still has 0x8100/0x88a8 there: such a
//! frame is never a knock (see `capture::admit`), so it stays in the kernel.
//!
//! IPv6: the program follows the extension-header chain exactly as the
//! decoder does — the same headers (`wire::ipv6::WALKED_EXT_HEADERS`), the
//! same length rules, up to the same depth (`wire::MAX_EXT_HEADERS`). cBPF
//! cannot loop, so the walk is unrolled, one block per level. A chain it
//! cannot follow (deeper, running past the packet, ending in anything but
//! TCP/UDP) is dropped, as is a non-first fragment: nothing the decoder
//! would call a knock is lost, and a random-port flood with any number of
//! extension headers stays in the kernel.

use crate::knock::template::PortRange;
use crate::knock::Proto;
use crate::wire::ethernet::ethertype;
use crate::wire::ipv6::{ext_length, ExtLength, WALKED_EXT_HEADERS};
use crate::wire::{ip_proto, ipv4, ipv6, tcp, udp, MAX_EXT_HEADERS};
use std::ops::Deref;

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Opcode: a class, size, mode and operation from [`op`], OR-ed.
    pub code: u16,
    /// Conditional jump: instructions skipped when the test holds. Jumps go
    /// forward only, so every program ends.
    pub jt: u8,
    /// Conditional jump: instructions skipped when it does not.
    pub jf: u8,
    /// Operand: a constant, an offset to load from, or for a return the
    /// bytes of the frame to keep (0 drops it).
    pub k: u32,
}

/// Instruction class, size, mode and operation bits (linux/bpf_common.h).
pub mod op {
    /// Class: load into the accumulator A.
    pub const LD: u16 = 0x00;
    /// Class: load into the index register X.
    pub const LDX: u16 = 0x01;
    /// Class: store A in a scratch memory cell.
    pub const ST: u16 = 0x02;
    /// Class: arithmetic on A.
    pub const ALU: u16 = 0x04;
    /// Class: jump, always or comparing A.
    pub const JMP: u16 = 0x05;
    /// Class: end the program, keeping `k` bytes of the frame.
    pub const RET: u16 = 0x06;
    /// Class: moves between A and X ([`TAX`], [`TXA`]).
    pub const MISC: u16 = 0x07;

    /// Load size: a 32-bit word, read in network byte order.
    pub const W: u16 = 0x00;
    /// Load size: a 16-bit half word (ports, ethertypes).
    pub const H: u16 = 0x08;
    /// Load size: one byte (protocol numbers, header lengths).
    pub const B: u16 = 0x10;

    /// Mode: the constant `k` itself.
    pub const IMM: u16 = 0x00;
    /// Mode: the frame at offset `k`, or an ancillary or network-header
    /// load ([`AD_OFF`], [`NET_OFF`]).
    pub const ABS: u16 = 0x20;
    /// Mode: the frame at offset X + `k`, for a header behind one of
    /// variable length.
    pub const IND: u16 = 0x40;
    /// Mode: scratch memory cell `k`.
    pub const MEM: u16 = 0x60;

    /// ALU operation: A += operand.
    pub const ADD: u16 = 0x00;
    /// ALU operation: A <<= operand.
    pub const LSH: u16 = 0x60;
    /// ALU operation: A &= operand.
    pub const AND: u16 = 0x50;

    /// Jump by `k`, always.
    pub const JA: u16 = 0x00;
    /// Jump if A == operand.
    pub const JEQ: u16 = 0x10;
    /// Jump if A > operand, unsigned.
    pub const JGT: u16 = 0x20;
    /// Jump if A >= operand, unsigned: with [`JGT`], a port range costs two
    /// comparisons whatever its width.
    pub const JGE: u16 = 0x30;
    /// Jump if A & operand != 0: fragment offsets and other bit tests.
    pub const JSET: u16 = 0x40;

    /// Operand source: the constant `k`.
    pub const K: u16 = 0x00;
    /// Operand source: the index register X.
    pub const X: u16 = 0x08;
    /// Misc operation: X = A.
    pub const TAX: u16 = 0x00;
    /// Misc operation: A = X.
    pub const TXA: u16 = 0x80;

    /// Base of the ancillary loads (`SKF_AD_OFF`) and their offsets.
    pub const AD_OFF: i32 = -0x1000;
    /// Ancillary offset of `skb->protocol`: the ethertype on any link (the
    /// inner one once the kernel took a VLAN tag off).
    pub const AD_PROTOCOL: i32 = 0;
    /// Ancillary offset of the packet type: frames this host sends
    /// (`PACKET_OUTGOING`) are dropped.
    pub const AD_PKTTYPE: i32 = 4;
    /// Loads at `NET_OFF + n` read byte `n` of the network header.
    pub const NET_OFF: i32 = -0x100000;
}

/// The kernel refuses longer programs (`BPF_MAXINSNS`).
pub const MAX_INSNS: usize = 4096;

const PACKET_OUTGOING: u32 = libc::PACKET_OUTGOING as u32;
const ETH_P_IP: u32 = ethertype::IPV4 as u32;
const ETH_P_IPV6: u32 = ethertype::IPV6 as u32;
const TCP: u32 = ip_proto::TCP as u32;
const UDP: u32 = ip_proto::UDP as u32;
/// Port ranges compared linearly at the leaves of the search tree.
const LEAF: usize = 8;

/// A built program, usable wherever `&[Insn]` is expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// The instructions, at most [`MAX_INSNS`]: what `SO_ATTACH_FILTER`
    /// takes.
    pub insns: Vec<Insn>,
    /// True when the port set was too large for an exact program and the
    /// filter passes every TCP/UDP frame instead (the matcher still decides).
    pub pass_all_ports: bool,
}

impl Deref for Program {
    type Target = [Insn];
    fn deref(&self) -> &[Insn] {
        &self.insns
    }
}

const fn stmt(code: u16, k: u32) -> Insn {
    Insn {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

const fn ret(k: u32) -> Insn {
    stmt(op::RET | op::K, k)
}

/// Ancillary and network-relative offsets are negative; the ABI carries
/// them as the u32 with the same bits.
const fn neg(off: i32) -> u32 {
    off as u32
}

/// Builds the filter for these (protocol, destination port) pairs.
/// Duplicates are fine. Frames that pass are cut to `snaplen` bytes.
pub fn build(ports: &[(Proto, u16)], snaplen: u32) -> Program {
    let ranges: Vec<(Proto, PortRange)> = ports
        .iter()
        .filter_map(|&(p, port)| Some((p, PortRange::new(port, port)?)))
        .collect();
    build_ranges(&ranges, snaplen)
}

/// Builds the filter for these (protocol, destination port range) pairs.
/// Overlaps and duplicates are fine. Frames that pass are cut to
/// `snaplen` bytes.
pub fn build_ranges(ranges: &[(Proto, PortRange)], snaplen: u32) -> Program {
    let tcp = merged(ranges, Proto::Tcp);
    let udp = merged(ranges, Proto::Udp);
    if let Some(insns) = assemble(Some((&tcp, &udp)), snaplen) {
        return Program {
            insns,
            pass_all_ports: false,
        };
    }
    crate::warn!(
        "{} distinct knock port ranges do not fit a {MAX_INSNS}-instruction filter: \
         every TCP/UDP frame goes to user space",
        tcp.len() + udp.len()
    );
    Program {
        // The fixed part is a few dozen instructions: this always fits.
        insns: assemble(None, snaplen).unwrap_or_else(|| vec![ret(snaplen)]),
        pass_all_ports: true,
    }
}

/// The ranges of `proto`, sorted, overlapping and adjacent ones merged:
/// `(first, last)`, each `first` above the previous `last + 1`.
fn merged(ranges: &[(Proto, PortRange)], proto: Proto) -> Vec<(u16, u16)> {
    let mut all: Vec<(u16, u16)> = ranges
        .iter()
        .filter(|(p, _)| *p == proto)
        .map(|(_, r)| (r.first(), r.last()))
        .collect();
    crate::sort::sort(&mut all);
    let mut out: Vec<(u16, u16)> = Vec::with_capacity(all.len());
    for (first, last) in all {
        match out.last_mut() {
            Some((_, end)) if u32::from(first) <= u32::from(*end) + 1 => *end = (*end).max(last),
            _ => out.push((first, last)),
        }
    }
    debug_assert!(out
        .windows(2)
        .all(|w| u32::from(w[0].1) + 1 < u32::from(w[1].0)));
    out
}

/// Jump targets of the fixed part of the program.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Label {
    Drop,
    V4,
    /// IPv6 with `n` extension headers walked: A = next header, X = its
    /// offset from the network header.
    Level(usize),
    /// Level `n`'s extension header of this kind.
    Ext(usize, u8),
    /// Level `n`'s way to `L4` (a conditional jump reaches 255 ahead).
    ToL4(usize),
    /// A `ret 0` next to the `n`th place that drops, in conditional reach.
    Out(usize),
    L4,
    Tcp,
    Udp,
}

enum Item {
    Op(Insn),
    /// Conditional jump `code #k`, true → `jt`, false → `jf`; `None` is the
    /// next instruction.
    Cond(u16, u32, Option<Label>, Option<Label>),
    Ja(Label),
    Mark(Label),
}

/// One protocol's ports as [`merged`] gives them: `(first, last)`,
/// ascending, disjoint, not adjacent.
type Spans = [(u16, u16)];

/// Lays out the program; `None` if it would exceed the kernel's limit.
/// `ports: None` builds the pass-all-TCP/UDP fallback; else the TCP and UDP
/// port ranges.
fn assemble(ports: Option<(&Spans, &Spans)>, snaplen: u32) -> Option<Vec<Insn>> {
    use op::*;
    use Item::*;
    use Label::*;
    let eq = |k, t| Cond(JMP | JEQ | K, k, Some(t), None);
    // Loads relative to the network header: at `n`, or at X + `n`.
    let net = |n: usize| neg(NET_OFF) + n as u32;
    let frag_field = ipv6::ext_field::FRAG_OFF_M.start;
    let ext_next = ipv6::ext_field::NXT_HDR;
    let ext_len = ipv6::ext_field::LENGTH;
    let mut p = vec![
        Op(stmt(LD | W | ABS, neg(AD_OFF + AD_PKTTYPE))),
        eq(PACKET_OUTGOING, Out(0)),
        Op(stmt(LD | W | ABS, neg(AD_OFF + AD_PROTOCOL))),
        eq(ETH_P_IP, V4),
        Cond(JMP | JEQ | K, ETH_P_IPV6, None, Some(Out(0))),
        // IPv6: the fixed header's next header, the next header at 40.
        Op(stmt(LDX | W | IMM, ipv6::HEADER_LEN as u32)),
        Op(stmt(LD | B | ABS, net(ipv6::field::NXT_HDR))),
        Ja(Level(0)),
        Mark(Out(0)),
        Op(ret(0)),
        Mark(V4),
        // A non-first fragment carries no ports.
        Op(stmt(LD | H | ABS, net(ipv4::field::FLG_OFF.start))),
        Cond(JMP | JSET | K, 0x1fff, Some(Out(1)), None),
        // X = offset of the L4 header from the network header.
        Op(stmt(LD | B | ABS, net(ipv4::field::VER_IHL))),
        Op(stmt(ALU | AND | K, 0x0f)),
        Op(stmt(ALU | LSH | K, 2)),
        Op(stmt(MISC | TAX, 0)),
        Op(stmt(LD | B | ABS, net(ipv4::field::PROTOCOL))),
        Ja(L4),
        Mark(Out(1)),
        Op(ret(0)),
    ];
    for level in 0..=MAX_EXT_HEADERS {
        p.push(Mark(Level(level)));
        p.push(eq(TCP, ToL4(level)));
        p.push(eq(UDP, ToL4(level)));
        // One more extension header than the decoder walks: dropped (the
        // decoder would call the frame malformed).
        if level < MAX_EXT_HEADERS {
            for kind in WALKED_EXT_HEADERS {
                p.push(eq(u32::from(kind), Ext(level, kind)));
            }
        }
        p.push(Op(ret(0)));
        p.push(Mark(ToL4(level)));
        p.push(Ja(L4));
        if level == MAX_EXT_HEADERS {
            break;
        }
        for kind in WALKED_EXT_HEADERS {
            p.push(Mark(Ext(level, kind)));
            let out = Out(2 + level);
            if ext_length(kind) == ExtLength::Fixed8 {
                // A non-first fragment: what follows is no header.
                p.push(Op(stmt(LD | H | IND, net(frag_field))));
                p.push(Cond(JMP | JSET | K, 0xfff8, Some(out), None));
            }
            // M[0] = this header's next header; X += this header's length.
            p.push(Op(stmt(LD | B | IND, net(ext_next))));
            p.push(Op(stmt(ST, 0)));
            match ext_length(kind) {
                ExtLength::Fixed8 => p.push(Op(stmt(MISC | TXA, 0))),
                ExtLength::Eights => p.extend([
                    Op(stmt(LD | B | IND, net(ext_len))),
                    Op(stmt(ALU | ADD | K, 1)),
                    Op(stmt(ALU | LSH | K, 3)),
                    Op(stmt(ALU | ADD | X, 0)),
                ]),
                ExtLength::AhWords => p.extend([
                    Op(stmt(LD | B | IND, net(ext_len))),
                    Op(stmt(ALU | ADD | K, 2)),
                    Op(stmt(ALU | LSH | K, 2)),
                    Op(stmt(ALU | ADD | X, 0)),
                ]),
            }
            if ext_length(kind) == ExtLength::Fixed8 {
                p.push(Op(stmt(ALU | ADD | K, ipv6::EXT_MIN_LEN as u32)));
            }
            p.push(Op(stmt(MISC | TAX, 0)));
            p.push(Op(stmt(LD | MEM, 0)));
            p.push(Ja(Level(level + 1)));
            if ext_length(kind) == ExtLength::Fixed8 {
                p.push(Mark(out));
                p.push(Op(ret(0)));
            }
        }
    }
    p.extend([
        // A = IP protocol, X = L4 header offset. The trees may be far
        // away, beyond a conditional jump's 255 reach: go through `ja`.
        Mark(L4),
        Op(Insn {
            code: JMP | JEQ | K,
            jt: 0,
            jf: 1,
            k: TCP,
        }),
        Ja(Tcp),
        Cond(JMP | JEQ | K, UDP, None, Some(Drop)),
        Ja(Udp),
        Mark(Drop),
        Op(ret(0)),
    ]);

    let (tcp_tree, udp_tree) = match ports {
        Some((tcp, udp)) => (tree(tcp, snaplen), tree(udp, snaplen)),
        None => (vec![ret(snaplen)], vec![ret(snaplen)]),
    };
    debug_assert_eq!(tcp::field::DST_PORT, udp::field::DST_PORT);
    let dport = stmt(LD | H | IND, net(tcp::field::DST_PORT.start));
    p.push(Mark(Tcp));
    p.push(Op(dport));
    p.extend(tcp_tree.into_iter().map(Op));
    p.push(Mark(Udp));
    p.push(Op(dport));
    p.extend(udp_tree.into_iter().map(Op));
    resolve(&p)
}

/// Binary search over sorted, disjoint port ranges ending in short linear
/// chains; every leaf returns by itself, so no jump leaves the subtree and
/// only the `jgt` over a large left half needs the long `ja` form. A single
/// port is one `jeq`; a range is `jge first` (below it: drop, as every
/// later range is higher still) and `jgt last` (above it: the next range).
fn tree(ranges: &Spans, snaplen: u32) -> Vec<Insn> {
    use op::*;
    if ranges.is_empty() {
        return vec![ret(0)];
    }
    if ranges.len() <= LEAF {
        let size = |&(first, last): &(u16, u16)| if first == last { 1 } else { 2 };
        let drop_at: usize = ranges.iter().map(size).sum();
        let pass_at = drop_at + 1;
        // Offset from the instruction at `pc` to `target`; a leaf holds at
        // most 2 * LEAF + 2 instructions, so it fits a u8.
        let to = |pc: usize, target: usize| (target - pc - 1) as u8;
        let mut out: Vec<Insn> = Vec::with_capacity(pass_at + 1);
        for &(first, last) in ranges {
            let pc = out.len();
            if first == last {
                out.push(Insn {
                    code: JMP | JEQ | K,
                    jt: to(pc, pass_at),
                    jf: 0,
                    k: u32::from(first),
                });
            } else {
                out.push(Insn {
                    code: JMP | JGE | K,
                    jt: 0,
                    jf: to(pc, drop_at),
                    k: u32::from(first),
                });
                out.push(Insn {
                    code: JMP | JGT | K,
                    jt: 0,
                    jf: to(pc + 1, pass_at),
                    k: u32::from(last),
                });
            }
        }
        debug_assert_eq!(out.len(), drop_at);
        out.push(ret(0));
        out.push(ret(snaplen));
        return out;
    }
    // Split at a multiple of LEAF so the leaves come out full: fewer
    // leaves, fewer `ret` pairs, more ranges under the instruction limit.
    let mid = (ranges.len() / LEAF / 2).max(1) * LEAF;
    let left = tree(&ranges[..mid], snaplen);
    let right = tree(&ranges[mid..], snaplen);
    let pivot = u32::from(ranges[mid - 1].1);
    let mut out = Vec::with_capacity(left.len() + right.len() + 2);
    match u8::try_from(left.len()) {
        Ok(skip) => out.push(Insn {
            code: JMP | JGT | K,
            jt: skip,
            jf: 0,
            k: pivot,
        }),
        Err(_) => {
            out.push(Insn {
                code: JMP | JGT | K,
                jt: 0,
                jf: 1,
                k: pivot,
            });
            out.push(stmt(JMP | JA, left.len() as u32));
        }
    }
    out.extend(left);
    out.extend(right);
    out
}

/// Turns labels into relative offsets; `None` if a conditional jump cannot
/// reach its target or the program is too long.
fn resolve(items: &[Item]) -> Option<Vec<Insn>> {
    let mut marks: Vec<(Label, usize)> = Vec::new();
    let mut n = 0usize;
    for item in items {
        match item {
            Item::Mark(l) => marks.push((*l, n)),
            _ => n += 1,
        }
    }
    if n > MAX_INSNS {
        return None;
    }
    let find = |l: Label| marks.iter().find(|(m, _)| *m == l).map(|(_, at)| *at);
    let rel = |target: Option<Label>, pc: usize| -> Option<u32> {
        match target {
            None => Some(0),
            Some(l) => find(l)?.checked_sub(pc + 1).map(|d| d as u32),
        }
    };
    let mut out = Vec::with_capacity(n);
    for item in items {
        let pc = out.len();
        match item {
            Item::Mark(_) => {}
            Item::Op(i) => out.push(*i),
            Item::Ja(l) => out.push(stmt(op::JMP | op::JA, rel(Some(*l), pc)?)),
            Item::Cond(code, k, t, f) => out.push(Insn {
                code: *code,
                jt: u8::try_from(rel(*t, pc)?).ok()?,
                jf: u8::try_from(rel(*f, pc)?).ok()?,
                k: *k,
            }),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the kernel knows about a frame besides its bytes.
    struct Skb<'a> {
        /// Bytes from the link-layer header on, as AF_PACKET sees them.
        data: &'a [u8],
        protocol: u16,
        pkttype: u8,
        net_off: usize,
    }

    /// A minimal cBPF interpreter for the instructions `build` emits, with
    /// the kernel's ancillary and network-relative loads. Returns the
    /// accepted length (0 = drop); a failed load drops, as in the kernel.
    fn run(prog: &[Insn], skb: &Skb) -> u32 {
        use op::*;
        let load = |off: i64, size: u16| -> Option<u32> {
            let width = match size {
                W => 4,
                H => 2,
                _ => 1,
            };
            let start = if off >= i64::from(NET_OFF) && off < i64::from(AD_OFF) {
                skb.net_off as i64 + off - i64::from(NET_OFF)
            } else if off >= 0 {
                off
            } else {
                return None;
            };
            let start = usize::try_from(start).ok()?;
            let bytes = skb.data.get(start..start + width)?;
            Some(bytes.iter().fold(0u32, |acc, b| acc << 8 | u32::from(*b)))
        };
        let (mut a, mut x) = (0u32, 0u32);
        let mut mem = [0u32; 16];
        let mut pc = 0usize;
        for _ in 0..MAX_INSNS + 1 {
            let i = prog[pc];
            pc += 1;
            let class = i.code & 0x07;
            match class {
                LD => {
                    let k = i.k as i32;
                    let mode = i.code & 0xe0;
                    a = if mode == MEM {
                        mem[i.k as usize]
                    } else if mode == ABS && (AD_OFF..AD_OFF + 64).contains(&k) {
                        match k - AD_OFF {
                            AD_PROTOCOL => u32::from(skb.protocol),
                            AD_PKTTYPE => u32::from(skb.pkttype),
                            other => panic!("unsupported ancillary load {other}"),
                        }
                    } else {
                        let off = match mode {
                            ABS => i64::from(k),
                            IND => i64::from(k) + i64::from(x),
                            m => panic!("unsupported LD mode {m:#x}"),
                        };
                        match load(off, i.code & 0x18) {
                            Some(v) => v,
                            None => return 0,
                        }
                    };
                }
                LDX => {
                    assert_eq!(i.code, LDX | W | IMM, "unsupported LDX");
                    x = i.k;
                }
                ST => {
                    assert_eq!(i.code, ST, "unsupported ST");
                    mem[i.k as usize] = a;
                }
                ALU => {
                    let operand = if i.code & X != 0 { x } else { i.k };
                    match i.code & 0xf0 {
                        AND => a &= operand,
                        LSH => a <<= operand,
                        ADD => a = a.wrapping_add(operand),
                        o => panic!("unsupported ALU op {o:#x}"),
                    }
                }
                MISC => match i.code {
                    c if c == MISC | TAX => x = a,
                    c if c == MISC | TXA => a = x,
                    c => panic!("unsupported MISC {c:#x}"),
                },
                RET => return i.k,
                JMP => {
                    let jump = |cond: bool| if cond { i.jt } else { i.jf } as usize;
                    pc += match i.code & 0xf0 {
                        JA => i.k as usize,
                        JEQ => jump(a == i.k),
                        JGT => jump(a > i.k),
                        JGE => jump(a >= i.k),
                        JSET => jump(a & i.k != 0),
                        o => panic!("unsupported jump {o:#x}"),
                    };
                }
                c => panic!("unsupported class {c}"),
            }
        }
        panic!("program did not terminate");
    }

    /// Ethernet + IPv4 (DF, no options) + TCP SYN 40000 → 7000.
    static TCP4_7000: [u8; 54] = [
        0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00, // ethernet
        0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0, // ipv4 ..ttl, proto
        10, 199, 0, 2, 10, 199, 0, 1, // addresses
        0x9c, 0x40, 0x1b, 0x58, 0, 0, 0, 1, 0, 0, 0, 0, // ports, seq, ack
        0x50, 0x02, 0xfa, 0xf0, 0, 0, 0, 0, // offset, SYN, window, csum, urg
    ];

    /// Ethernet + IPv6 + UDP 40000 → 7001.
    static UDP6_7001: [u8; 62] = [
        0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x86, 0xdd, // ethernet
        0x60, 0, 0, 0, 0, 8, 17, 64, // version, length, next = UDP, hops
        0xfd, 0, 0x01, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, // src
        0xfd, 0, 0x01, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, // dst
        0x9c, 0x40, 0x1b, 0x59, 0, 8, 0, 0, // udp
    ];

    /// Ethernet ARP request (28-byte body).
    static ARP: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 2, 0x08, 0x06, // ethernet
        0, 1, 0x08, 0, 6, 4, 0, 1, // htype, ptype, sizes, request
        0x02, 0, 0, 0, 0, 2, 10, 199, 0, 2, // sender
        0, 0, 0, 0, 0, 0, 10, 199, 0, 1, // target
    ];

    const SNAP: u32 = 128;

    fn knock_ports() -> Program {
        build(&[(Proto::Tcp, 7000), (Proto::Udp, 7001)], SNAP)
    }

    fn eth(data: &[u8]) -> Skb<'_> {
        Skb {
            data,
            protocol: u16::from_be_bytes([data[12], data[13]]),
            pkttype: 0,
            net_off: 14,
        }
    }

    fn with_dport(frame: &[u8], l4: usize, port: u16) -> Vec<u8> {
        let mut f = frame.to_vec();
        f[l4 + 2..l4 + 4].copy_from_slice(&port.to_be_bytes());
        f
    }

    #[test]
    fn passes_knock_ports_with_snaplen() {
        let prog = knock_ports();
        assert!(!prog.pass_all_ports);
        assert_eq!(run(&prog, &eth(&TCP4_7000)), SNAP);
        assert_eq!(run(&prog, &eth(&UDP6_7001)), SNAP);
    }

    #[test]
    fn drops_other_ports_and_protocols() {
        let prog = knock_ports();
        assert_eq!(run(&prog, &eth(&with_dport(&TCP4_7000, 34, 7001))), 0);
        assert_eq!(run(&prog, &eth(&with_dport(&TCP4_7000, 34, 22))), 0);
        assert_eq!(run(&prog, &eth(&with_dport(&UDP6_7001, 54, 7000))), 0);
        let mut icmp = TCP4_7000;
        icmp[23] = 1;
        assert_eq!(run(&prog, &eth(&icmp)), 0);
        assert_eq!(run(&prog, &eth(&ARP)), 0);
    }

    #[test]
    fn ipv4_fragments() {
        let prog = knock_ports();
        // first fragment (MF, offset 0) still carries the ports
        let mut first = TCP4_7000;
        first[20] = 0x20;
        assert_eq!(run(&prog, &eth(&first)), SNAP);
        // a later fragment whose payload happens to look like port 7000
        let mut later = TCP4_7000;
        later[20] = 0x00;
        later[21] = 0xb9;
        assert_eq!(run(&prog, &eth(&later)), 0);
    }

    #[test]
    fn ipv4_options_move_the_port() {
        let prog = knock_ports();
        // IHL 6: four option bytes before TCP
        let mut f = TCP4_7000[..34].to_vec();
        f[14] = 0x46;
        f.extend_from_slice(&[1, 1, 1, 0]);
        f.extend_from_slice(&TCP4_7000[34..]);
        assert_eq!(run(&prog, &eth(&f)), SNAP);
        // the bytes at the no-options position are the option, not a port
        let mut g = f.clone();
        g[40..42].copy_from_slice(&22u16.to_be_bytes());
        assert_eq!(run(&prog, &eth(&g)), 0);
    }

    /// UDP6_7001 with (next-header code, bytes) extension headers
    /// inserted, chained through their first byte, then `last` and `dport`.
    fn v6_chain(exts: &[(u8, &[u8])], last: u8, dport: u16) -> Vec<u8> {
        let mut f = UDP6_7001[..54].to_vec();
        let mut next_at = 20; // IPv6 next-header byte
        for (code, ext) in exts {
            f[next_at] = *code;
            next_at = f.len();
            f.extend_from_slice(ext);
        }
        f[next_at] = last;
        f.extend_from_slice(&with_dport(&UDP6_7001, 54, dport)[54..]);
        let payload = (f.len() - 54) as u16;
        f[18..20].copy_from_slice(&payload.to_be_bytes());
        f
    }

    const HBH: [u8; 8] = [0, 0, 1, 4, 0, 0, 0, 0];
    const HBH16: [u8; 16] = [0, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    const AH: [u8; 12] = [0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1];
    /// Fragment header, offset 0, more fragments.
    const FRAG_FIRST: [u8; 8] = [0, 0, 0, 1, 0, 0, 0, 9];
    /// Fragment header, offset 185 (1480 bytes).
    const FRAG_LATER: [u8; 8] = [0, 0, 0x05, 0xc8, 0, 0, 0, 9];

    #[test]
    fn ipv6_one_extension_header_is_looked_through() {
        let prog = knock_ports();
        for ext in [(0, &HBH[..]), (0, &HBH16), (51, &AH), (44, &FRAG_FIRST)] {
            let f = v6_chain(&[ext], 17, 7001);
            assert_eq!(run(&prog, &eth(&f)), SNAP, "{ext:?} + udp/7001");
            let f = v6_chain(&[ext], 17, 9);
            assert_eq!(run(&prog, &eth(&f)), 0, "{ext:?} + udp/9");
            let f = v6_chain(&[ext], 6, 7001);
            assert_eq!(run(&prog, &eth(&f)), 0, "{ext:?} + tcp/7001");
        }
        // routing (43) and destination options (60) have the same layout
        for code in [43u8, 60] {
            let f = v6_chain(&[(code, &HBH16)], 17, 7001);
            assert_eq!(run(&prog, &eth(&f)), SNAP, "{code}");
        }
        // a later fragment: what looks like a port is payload
        let f = v6_chain(&[(44, &FRAG_LATER)], 17, 7001);
        assert_eq!(run(&prog, &eth(&f)), 0);
        // MLD report: hop-by-hop then ICMPv6
        let f = v6_chain(&[(0, &HBH)], 58, 7001);
        assert_eq!(run(&prog, &eth(&f)), 0);
        // ESP: nothing to see
        let mut esp = UDP6_7001;
        esp[20] = 50;
        assert_eq!(run(&prog, &eth(&esp)), 0);
    }

    #[test]
    fn ipv6_chains_are_walked_as_deep_as_the_decoder() {
        use crate::wire::{decode, Decoded, Link};
        let prog = knock_ports();
        // Chains of 0..=MAX_EXT_HEADERS + 1 headers of every walked kind
        // and length rule, to a knock port and not: the filter passes
        // exactly what the decoder calls a knock on a knock port.
        let kinds: [(u8, &[u8]); 5] = [
            (0, &HBH),
            (60, &HBH16),
            (43, &HBH16),
            (51, &AH),
            (0, &HBH16),
        ];
        let mut x = 0x2545_f491u32;
        for n in 0..=MAX_EXT_HEADERS + 1 {
            for _ in 0..20 {
                let chain: Vec<(u8, &[u8])> = (0..n)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        kinds[x as usize % kinds.len()]
                    })
                    .collect();
                for (port, knock_port) in [(7001, true), (9, false)] {
                    let f = v6_chain(&chain, 17, port);
                    let decoded = decode(&f, Link::Ethernet);
                    let want = n <= MAX_EXT_HEADERS && knock_port;
                    assert_eq!(matches!(decoded, Decoded::Knock(_)), n <= MAX_EXT_HEADERS);
                    assert_eq!(
                        run(&prog, &eth(&f)),
                        if want { SNAP } else { 0 },
                        "{n} headers to udp/{port}: {decoded:?}"
                    );
                }
            }
        }
        // A first fragment deep in a chain is passed (and counted as a
        // fragment up there); a later one is not.
        let f = v6_chain(&[(0, &HBH), (60, &HBH16), (44, &FRAG_FIRST)], 17, 7001);
        assert_eq!(decode(&f, Link::Ethernet), Decoded::Fragment);
        assert_eq!(run(&prog, &eth(&f)), SNAP);
        let f = v6_chain(&[(0, &HBH), (60, &HBH16), (44, &FRAG_LATER)], 17, 7001);
        assert_eq!(run(&prog, &eth(&f)), 0);
        // A header claiming more than the packet holds: the load fails.
        let mut long = HBH16;
        long[1] = 200;
        let f = v6_chain(&[(0, &HBH), (60, &long)], 17, 7001);
        assert_eq!(run(&prog, &eth(&f)), 0);
    }

    #[test]
    fn outgoing_frames_are_dropped() {
        let prog = knock_ports();
        let mut skb = eth(&TCP4_7000);
        skb.pkttype = 4;
        assert_eq!(run(&prog, &skb), 0);
        skb.pkttype = 3; // PACKET_OTHERHOST is still traffic to look at
        assert_eq!(run(&prog, &skb), SNAP);
    }

    #[test]
    fn truncated_frames_are_dropped() {
        let prog = knock_ports();
        assert_eq!(run(&prog, &eth(&TCP4_7000[..35])), 0);
    }

    #[test]
    fn vlan_outer_tag_in_metadata_and_inner_tags_stay_in_the_kernel() {
        let prog = knock_ports();
        // Outer tag already stripped by the kernel: a plain frame.
        assert_eq!(run(&prog, &eth(&TCP4_7000)), SNAP);
        // QinQ: skb->protocol = 0x8100/0x88a8, an inner tag in the bytes.
        // A stacked tag never knocks (capture::admit): dropped here.
        let mut qinq = TCP4_7000[..12].to_vec();
        qinq.extend_from_slice(&[0x81, 0x00, 0x00, 0x2a, 0x08, 0x00]);
        qinq.extend_from_slice(&TCP4_7000[14..]);
        for protocol in [0x8100, 0x88a8] {
            let skb = Skb {
                data: &qinq,
                protocol,
                pkttype: 0,
                net_off: 14,
            };
            assert_eq!(run(&prog, &skb), 0);
        }
    }

    #[test]
    fn network_offset_not_ethernet() {
        // loopback/tun style: no link header at all
        let prog = knock_ports();
        let skb = Skb {
            data: &TCP4_7000[14..],
            protocol: 0x0800,
            pkttype: 0,
            net_off: 0,
        };
        assert_eq!(run(&prog, &skb), SNAP);
    }

    #[test]
    fn no_ports_drops_everything() {
        let prog = build(&[], SNAP);
        assert_eq!(run(&prog, &eth(&TCP4_7000)), 0);
        assert_eq!(run(&prog, &eth(&UDP6_7001)), 0);
    }

    #[test]
    fn many_ports_exact_within_limit() {
        // every third port of a wide range: 1500 TCP + 500 UDP ports
        let mut ports: Vec<(Proto, u16)> = (0..1500).map(|i| (Proto::Tcp, 1000 + i * 3)).collect();
        ports.extend((0..500).map(|i| (Proto::Udp, 20000 + i * 7)));
        let prog = build(&ports, SNAP);
        assert!(!prog.pass_all_ports);
        assert!(prog.len() <= MAX_INSNS, "{} insns", prog.len());
        for port in 990..5600u16 {
            let want = port >= 1000 && (port - 1000) % 3 == 0 && port < 1000 + 1500 * 3;
            let got = run(&prog, &eth(&with_dport(&TCP4_7000, 34, port)));
            assert_eq!(got, if want { SNAP } else { 0 }, "tcp/{port}");
            // a TCP port is not a UDP port
            let got = run(&prog, &eth(&with_dport(&UDP6_7001, 54, port)));
            assert_eq!(got, 0, "udp/{port}");
        }
        for port in 19990..23600u16 {
            let want = port >= 20000 && (port - 20000) % 7 == 0 && port < 20000 + 500 * 7;
            let got = run(&prog, &eth(&with_dport(&UDP6_7001, 54, port)));
            assert_eq!(got, if want { SNAP } else { 0 }, "udp/{port}");
        }
    }

    #[test]
    fn too_many_ports_fall_back_to_all_tcp_udp() {
        let ports: Vec<(Proto, u16)> = (0..20000).map(|i| (Proto::Tcp, i * 3)).collect();
        let prog = build(&ports, SNAP);
        assert!(prog.pass_all_ports);
        assert!(prog.len() <= MAX_INSNS);
        assert_eq!(run(&prog, &eth(&with_dport(&TCP4_7000, 34, 1))), SNAP);
        assert_eq!(run(&prog, &eth(&with_dport(&UDP6_7001, 54, 1))), SNAP);
        // still no ARP, no fragments, no outgoing
        assert_eq!(run(&prog, &eth(&ARP)), 0);
        let mut skb = eth(&TCP4_7000);
        skb.pkttype = 4;
        assert_eq!(run(&prog, &skb), 0);
    }

    #[test]
    fn all_jumps_stay_inside_the_program() {
        let ports: Vec<(Proto, u16)> = (0..2500).map(|i| (Proto::Udp, i * 11)).collect();
        let prog = build(&ports, SNAP);
        assert!(!prog.pass_all_ports, "{} insns", prog.len());
        for (pc, i) in prog.iter().enumerate() {
            if i.code & 0x07 == op::JMP {
                let far = if i.code & 0xf0 == op::JA {
                    i.k as usize
                } else {
                    usize::from(i.jt.max(i.jf))
                };
                assert!(pc + 1 + far < prog.len(), "jump at {pc} leaves the program");
            }
        }
        assert!(matches!(prog.last(), Some(i) if i.code == op::RET));
    }

    fn tcp_port(prog: &[Insn], port: u16) -> u32 {
        run(prog, &eth(&with_dport(&TCP4_7000, 34, port)))
    }

    fn udp_port(prog: &[Insn], port: u16) -> u32 {
        run(prog, &eth(&with_dport(&UDP6_7001, 54, port)))
    }

    fn range(first: u16, last: u16) -> PortRange {
        PortRange::new(first, last).unwrap()
    }

    /// Ranges pass exactly their ports, edges included, next to single
    /// ports, overlapping and adjacent ranges.
    #[test]
    fn ranges_pass_exactly_their_ports() {
        let ranges = [
            (Proto::Tcp, range(40000, 40999)),
            (Proto::Tcp, range(7000, 7000)),
            (Proto::Tcp, range(40500, 41010)),
            (Proto::Tcp, range(41011, 41011)),
            (Proto::Tcp, range(1, 3)),
            (Proto::Tcp, range(65530, 65535)),
            (Proto::Udp, range(50000, 50999)),
        ];
        let prog = build_ranges(&ranges, SNAP);
        assert!(!prog.pass_all_ports);
        let tcp = |p: u16| {
            (1..=3).contains(&p) || p == 7000 || (40000..=41011).contains(&p) || p >= 65530
        };
        for port in 1..=u16::MAX {
            let want = if tcp(port) { SNAP } else { 0 };
            assert_eq!(tcp_port(&prog, port), want, "tcp/{port}");
            let want = if (50000..=50999).contains(&port) {
                SNAP
            } else {
                0
            };
            assert_eq!(udp_port(&prog, port), want, "udp/{port}");
        }
    }

    /// A 1000-port range costs two comparisons: the program is as short as
    /// for a single port plus one instruction, and it is the same program
    /// whatever ports of the range a window uses.
    #[test]
    fn a_wide_range_is_two_comparisons() {
        let single = build(&[(Proto::Tcp, 40000)], SNAP);
        let wide = build_ranges(&[(Proto::Tcp, range(40000, 40999))], SNAP);
        assert_eq!(wide.len(), single.len() + 1);
        // The range's ports one by one merge into the same range…
        let each: Vec<(Proto, u16)> = (40000..41000).map(|p| (Proto::Tcp, p)).collect();
        assert_eq!(build(&each, SNAP), wide);
        // …while ports that are not adjacent take a comparison each.
        let every_other: Vec<(Proto, u16)> =
            (40000..41000).step_by(2).map(|p| (Proto::Tcp, p)).collect();
        let per_port = build(&every_other, SNAP);
        assert!(per_port.len() > wide.len() + 500, "{}", per_port.len());
        // Single ports given as ranges build the program they always did.
        let ports = [(Proto::Tcp, 7000), (Proto::Udp, 7001), (Proto::Tcp, 9)];
        let as_ranges: Vec<(Proto, PortRange)> =
            ports.iter().map(|&(p, n)| (p, range(n, n))).collect();
        assert_eq!(build(&ports, SNAP), build_ranges(&as_ranges, SNAP));
    }

    /// Many disjoint ranges: exact within the limit, jumps inside.
    #[test]
    fn many_ranges_exact_within_limit() {
        let ranges: Vec<(Proto, PortRange)> = (0..1000u16)
            .map(|i| (Proto::Udp, range(10 + i * 60, 10 + i * 60 + 29)))
            .collect();
        let prog = build_ranges(&ranges, SNAP);
        assert!(!prog.pass_all_ports, "{} insns", prog.len());
        for port in 1..=61_000u16 {
            let k = port.wrapping_sub(10);
            let want = port >= 10 && k / 60 < 1000 && k % 60 < 30;
            assert_eq!(
                udp_port(&prog, port),
                if want { SNAP } else { 0 },
                "udp/{port}"
            );
        }
        for (pc, i) in prog.iter().enumerate() {
            if i.code & 0x07 == op::JMP && i.code & 0xf0 != op::JA {
                assert!(pc + 1 + usize::from(i.jt.max(i.jf)) < prog.len());
            }
        }
    }
}

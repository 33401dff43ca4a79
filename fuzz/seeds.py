#!/usr/bin/env python3
"""Rebuilds the seed corpora in fuzz/corpus/ from the crate's own test
fixtures: the frames in src/wire/mod.rs and the shipped and test configs.
Run from anywhere: python3 fuzz/seeds.py"""
import hashlib
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"


def put(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def frames():
    text = (ROOT / "src" / "wire" / "mod.rs").read_text()
    out = {}
    for m in re.finditer(r"static (\w+): \[u8; (\d+)\] = \[(.*?)\];", text, re.S):
        body = re.sub(r"//[^\n]*", "", m.group(3))
        data = bytes(int(h, 16) for h in re.findall(r"0x([0-9a-fA-F]{2})", body))
        assert len(data) == int(m.group(2)), m.group(1)
        out[m.group(1)] = data
    return out


def main():
    fx = frames()
    for name, data in fx.items():
        put("decode", name.lower(), data)
    # decode_match records: [head: link in bits 0-1, clock steps above][len][frame]
    def rec(name, steps=1):
        data = fx[name]
        link = 1 if name.startswith("RAW_") else 2 if name.startswith("LOOPBACK") else 0
        return bytes([(steps << 2) | link, len(data)]) + data
    # decode_match: a config byte, then the records. Each seed goes in with
    # both configurations and, for the mixes, with frames also non-local.
    for name in fx:
        for cfg in (0, 1):
            put("decode_match", f"one{cfg}_" + name.lower(), bytes([cfg]) + rec(name))
    mixes = [
        ["ETH_IPV4_TCP_SYN", "ETH_IPV4_UDP_PADDED", "ETH_IPV4_OPTIONS_TCP"],
        ["ETH_IPV4_TCP_SYN", "ETH_IPV4_TCP_SYN", "ETH_IPV4_TCP_SYN"],
        ["ETH_IPV6_EXT_UDP", "RAW_IPV6_UDP", "ETH_IPV4_TCP_SNAPPED", "ETH_IPV4_TCP_ECN_SYN"],
        ["ETH_VLAN_IPV4_TCP", "ETH_QINQ_IPV6_UDP", "ETH_IPV6_EXT_LOOP", "RAW_IPV4_TCP"],
        ["ETH_IPV6_TCP_SYN", "ETH_IPV4_TCP_ECN_SYN", "ETH_IPV6_TCP_SYN"],
    ]
    for mix in mixes:
        for cfg in (0, 1):
            for foreign in (0, 0x80):
                data = bytes([cfg]) + b"".join(
                    bytes([r[0] | foreign]) + r[1:] for r in (rec(n) for n in mix))
                put("decode_match", "mix_" + hashlib.sha1(data).hexdigest()[:12], data)
    # knockd.conf: the example in knock.conf(5), and every other key.
    man = (ROOT / "man" / "knock.conf.5").read_text()
    block = re.search(r"\.nf\n(\[options\].*?)\.fi", man, re.S)
    if block:
        put("config", "knockd_man.conf", block.group(1).replace("\\-", "-").encode())
    put("config", "knockd_keys.conf", b"""[options]
    UseSyslog
    Interface = eth0
[smtp]
    One_Time_Sequences = /etc/knockd/smtp_sequences
    Seq_Timeout = 5
    TCPFlags = fin,!ack
    Target = 192.0.2.1
    Start_Command = true %IP%
    Start_Command_6 = true %IP%
[udp6]
    Sequence = 1000:udp, 2000:tcp ,3000
    Cmd_Timeout = 10
    Stop_Command = true %IP%
    Stop_Command_6 =
""")
    confs = [ROOT / "knock.conf.example"] + sorted((ROOT / "tests" / "check_cli_fixtures").glob("*.conf"))
    for path in confs:
        put("config", path.name, path.read_bytes())


main()

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
    for name in fx:
        put("decode_match", "one_" + name.lower(), rec(name))
    mixes = [
        ["ETH_IPV4_TCP_SYN", "ETH_IPV4_UDP_PADDED", "ETH_IPV4_OPTIONS_TCP"],
        ["ETH_IPV4_TCP_SYN", "ETH_IPV4_TCP_SYN", "ETH_IPV4_TCP_SYN"],
        ["ETH_IPV6_EXT_UDP", "RAW_IPV6_UDP", "ETH_IPV4_TCP_SNAPPED", "ETH_IPV4_TCP_ECN_SYN"],
        ["ETH_VLAN_IPV4_TCP", "ETH_QINQ_IPV6_UDP", "ETH_IPV6_EXT_LOOP", "RAW_IPV4_TCP"],
    ]
    for mix in mixes:
        data = b"".join(rec(n) for n in mix)
        put("decode_match", "mix_" + hashlib.sha1(data).hexdigest()[:12], data)
    confs = [ROOT / "knock.conf.example"] + sorted((ROOT / "tests" / "check_cli_fixtures").glob("*.conf"))
    for path in confs:
        put("config", path.name, path.read_bytes())


main()

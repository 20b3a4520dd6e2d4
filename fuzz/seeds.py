#!/usr/bin/python3
"""Writes the seed corpus of the fuzz targets (fuzz/corpus/<target>/), deterministically.

- Real frames: a Linux kernel exchange between two network namespaces (ARP, ping, a 3000-byte
  ping in fragments, a ping with the record-route option, UDP to a closed port and its ICMP
  port unreachable, a TCP connection with data and both FINs, a TCP SYN to a closed port and
  its RST), captured with tshark (root; `--no-capture` skips it, keeping the frames already in
  the corpus).
- Edge cases built with scapy: every frame cut at each layer's boundary, IPv4 version and
  header-length errors, options of every kind and broken ones, TCP data offsets, UDP lengths
  that lie, ICMP errors with quotes, ARP with odd sizes, VLAN tags, virtio-net headers.
- The configuration examples and broken variants of them.
- For the structure-aware targets (their input is a sequence of operations), a few
  pseudo-random inputs; the fuzzer's own finds (minimized with `-merge=1`) are added by hand
  after a long run (docs/robustness.md).

Each file is named by the SHA-1 of its content, as libFuzzer names its finds. Run it with the
system Python (`/usr/bin/python3 fuzz/seeds.py`), which has scapy.
"""
import hashlib
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time

from scapy.all import (ARP, ICMP, IP, TCP, UDP, Dot1Q, Ether, IPOption_RR,  # noqa: E402
                       IPOption_NOP, IPOption_EOL, Raw, rdpcap)

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
A_MAC, B_MAC = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
A_IP, B_IP = "10.0.0.1", "10.0.0.2"


def put(target, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def sh(cmd):
    subprocess.run(cmd, shell=True, check=True, stdout=subprocess.DEVNULL)


def capture():
    """Frames of a kernel exchange A <-> B, as B's veth saw them."""
    tag = "xdpos-fz%d-" % os.getpid()
    a, b = tag + "a", tag + "b"
    pcap = tempfile.mktemp(suffix=".pcap")
    try:
        sh(f"ip netns add {a} && ip netns add {b}")
        sh(f"ip link add va netns {a} address {A_MAC} type veth peer name vb netns {b} address {B_MAC}")
        for ns, dev, ip in ((a, "va", A_IP), (b, "vb", B_IP)):
            sh(f"ip -n {ns} addr add {ip}/24 dev {dev} && ip -n {ns} link set {dev} up && "
               f"ip -n {ns} link set lo up && ip netns exec {ns} ethtool -K {dev} tx off tso off gso off >/dev/null && "
               f"ip netns exec {ns} sysctl -qw net.ipv6.conf.all.disable_ipv6=1")
        time.sleep(1)
        tshark = subprocess.Popen(["ip", "netns", "exec", b, "tshark", "-q", "-i", "vb", "-w", pcap],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(2)
        server = subprocess.Popen(["ip", "netns", "exec", b, "/usr/bin/python3", "-c",
                                   "import socket\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
                                   "s.bind(('%s',8080));s.listen(1);c,_=s.accept()\n"
                                   "d=c.recv(4096);c.sendall(d*3);c.close()" % B_IP])
        time.sleep(0.5)
        ex = f"ip netns exec {a} "
        sh(ex + f"ping -c 2 -i 0.2 {B_IP}")
        sh(ex + f"ping -c 1 -s 3000 {B_IP}")
        sh(ex + f"ping -c 1 -R {B_IP}")
        sh(ex + "/usr/bin/python3 -c \"import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
           f"s.sendto(b'hello udp',('{B_IP}',9));s.settimeout(0.5)\"")
        sh(ex + "/usr/bin/python3 -c \"import socket;c=socket.create_connection(('%s',8080));"
           "c.sendall(b'GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n');import time;time.sleep(0.2);c.recv(65536);c.close()\"" % B_IP)
        subprocess.run(ex + f"/usr/bin/python3 -c \"import socket;socket.create_connection(('{B_IP}',9999),1)\"",
                       shell=True, stderr=subprocess.DEVNULL)
        server.wait(timeout=5)
        time.sleep(1)
        tshark.terminate()
        tshark.wait(timeout=5)
        return [bytes(p) for p in rdpcap(pcap)]
    finally:
        subprocess.run(f"ip netns del {a}; ip netns del {b}", shell=True, stderr=subprocess.DEVNULL)
        if os.path.exists(pcap):
            os.unlink(pcap)


def layers(frame):
    """(ethernet, arp, ipv4, icmp, udp, tcp) slices of a frame (None where absent)."""
    p = Ether(frame)
    out = {"eth": frame}
    if ARP in p:
        out["arp"] = bytes(p[ARP])[:28]
    if IP in p:
        ip = bytes(p[IP])
        out["ipv4"] = ip
        hl = (ip[0] & 15) * 4
        l4 = ip[hl:]
        if p[IP].frag == 0:
            if p[IP].proto == 1:
                out["icmp"] = l4
            elif p[IP].proto == 17:
                out["udp"] = l4
            elif p[IP].proto == 6:
                out["tcp"] = l4
    return out


def crafted():
    """Edge cases, as Ethernet frames."""
    e = Ether(src=A_MAC, dst=B_MAC)
    ip = IP(src=A_IP, dst=B_IP)
    f = []
    f.append(e / ip / UDP(sport=1234, dport=7) / Raw(b"x" * 18))
    f.append(e / Dot1Q(vlan=5) / ip / UDP(sport=1, dport=7) / Raw(b"tagged"))
    f.append(e / Dot1Q(vlan=5) / Dot1Q(vlan=6) / ip / ICMP() / Raw(b"qinq"))
    f.append(e / IP(src=A_IP, dst=B_IP, ihl=15, options=[IPOption_NOP()] * 40) / UDP() / Raw(b"opts"))
    f.append(e / IP(src=A_IP, dst=B_IP, options=[IPOption_RR(routers=["0.0.0.0"] * 9)]) / ICMP())
    f.append(e / IP(src=A_IP, dst=B_IP, options=[IPOption_EOL()]) / TCP(flags="S"))
    f.append(e / IP(src=A_IP, dst=B_IP, flags="MF", frag=0, id=7) / Raw(b"a" * 24))
    f.append(e / IP(src=A_IP, dst=B_IP, frag=3, id=7, proto=17) / Raw(b"b" * 24))
    f.append(e / IP(src=A_IP, dst=B_IP, frag=8191, id=7, proto=17) / Raw(b"c" * 7))
    f.append(e / ip / TCP(sport=5000, dport=80, flags="S", options=[
        ("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 0)), ("NOP", None), ("WScale", 14)]))
    f.append(e / ip / TCP(sport=5000, dport=80, flags="A", options=[
        ("SAck", (1, 2, 3, 4, 5, 6, 7, 8)), ("NOP", None), ("NOP", None)]))
    f.append(e / ip / TCP(flags="FSRPAUEC", urgptr=65535, window=0) / Raw(b"all flags"))
    f.append(e / ip / TCP(dataofs=15) / Raw(b"\x02\x04" + b"\x00" * 38))
    f.append(e / ip / TCP(options=[(2, b"\x05"), (3, b""), (8, b"\x00" * 4), (255, b"")]))
    f.append(e / ip / ICMP(type=3, code=4, nexthopmtu=1280) / bytes(IP(src=B_IP, dst=A_IP) / TCP())[:28])
    f.append(e / ip / ICMP(type=11, code=0) / bytes(IP(src=B_IP, dst=A_IP) / UDP())[:28])
    f.append(e / ip / ICMP(type=5, code=1, gw="10.0.0.9") / bytes(IP() / UDP())[:28])
    f.append(e / ip / ICMP(type=13) / Raw(b"\x00" * 12))
    f.append(Ether(src=A_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=A_IP, pdst=B_IP, hwsrc=A_MAC))
    f.append(Ether(src=A_MAC, dst=B_MAC) / ARP(op=2, psrc=A_IP, pdst=B_IP, hwsrc=A_MAC, hwdst=B_MAC))
    f.append(Ether(src=A_MAC, dst=B_MAC) / ARP(op=3, hwlen=0, plen=0))
    f.append(Ether(src=A_MAC, dst=B_MAC) / ARP(hwtype=6, ptype=0x86dd, psrc=A_IP, pdst=B_IP))
    f.append(Ether(src=A_MAC, dst=B_MAC, type=0x86dd) / Raw(b"\x60" + b"\x00" * 39))
    out = [bytes(x) for x in f]
    # Header fields that lie, on a good UDP frame.
    good = bytearray(bytes(e / ip / UDP(sport=1234, dport=7) / Raw(b"payload!")))
    for off, val in ((14, 0x65), (14, 0x4f), (14, 0x44), (14, 0x40)):  # version/IHL
        b = bytearray(good); b[off] = val; out.append(bytes(b))
    for total in (0, 19, 20, 27, 65535):
        b = bytearray(good); b[16:18] = struct.pack(">H", total); out.append(bytes(b))
    for ulen in (0, 7, 8, 9, 65535):
        b = bytearray(good); b[38:40] = struct.pack(">H", ulen); out.append(bytes(b))
    b = bytearray(good); b[24] ^= 0xff; out.append(bytes(b))  # IPv4 checksum
    b = bytearray(good); b[40] ^= 0xff; out.append(bytes(b))  # UDP checksum
    b = bytearray(good); b[40:42] = b"\x00\x00"; out.append(bytes(b))  # no UDP checksum
    return out


def vnet():
    """virtio-net headers: flags, gso type, hdr_len, gso_size, csum_start, csum_offset."""
    h = []
    for flags, gso, hl, size, start, off in (
            (0, 0, 0, 0, 0, 0), (1, 0, 0, 0, 34, 16), (1, 1, 54, 1448, 34, 16),
            (2, 0, 0, 0, 0, 0), (1, 1, 0, 0, 34, 16), (1, 4, 54, 1448, 34, 6),
            (0xff, 0xff, 0xffff, 0xffff, 0xffff, 0xffff), (1, 0x81, 54, 1448, 34, 16)):
        h.append(struct.pack("<BBHHHH", flags, gso, hl, size, start, off) + b"\x00\x00")
    return h


def main():
    random.seed(7)
    frames = []
    if "--no-capture" not in sys.argv:
        real = capture()
        assert len(real) > 10, "the capture caught %d frames" % len(real)
        frames += real
    frames += crafted()
    for fr in frames:
        put("wire_ethernet", fr)
        ls = layers(fr)
        for t in ("arp", "ipv4", "icmp", "udp", "tcp"):
            if t in ls:
                put("wire_" + t, ls[t])
                # The same cut at a few lengths: every parser's length checks.
                for n in sorted({0, 1, 7, 8, 19, 20, len(ls[t]) - 1}):
                    if 0 <= n < len(ls[t]):
                        put("wire_" + t, ls[t][:n])
        for n in (0, 13, 14, 17, 18, 33, 34):
            if n < len(fr):
                put("wire_ethernet", fr[:n])
    for h in vnet():
        put("wire_vnet", h)
        put("wire_vnet", h[:11])
    ex = os.path.join(HERE, "..", "config", "examples")
    for name in sorted(os.listdir(ex)):
        text = open(os.path.join(ex, name), "rb").read()
        put("config", text)
        put("config", text.replace(b"=", b"", 1))
        put("config", text + b"\n[unknown]\nkey = 1\n")
        put("config", text.replace(b"1500", b"99999999999999999999"))
    for t in (b"", b"[", b"a = \"\\u{110000}\"", b"x = 1\nx = 2\n", "name = \"\u00e9\u6f22\"".encode()):
        put("config", t)
    # Structure-aware targets: a few pseudo-random inputs of a few sizes.
    for t in ("frag", "arp_cache", "fib", "tso", "gro", "tcp", "stack"):
        for n in (16, 128, 1024, 4096):
            put(t, bytes(random.getrandbits(8) for _ in range(n)))
    # The frame-based structure-aware targets also start from real frames.
    for fr in frames[:20]:
        put("tso", fr)
        put("stack", fr)


if __name__ == "__main__":
    main()

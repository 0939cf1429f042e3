#!/usr/bin/env python3
"""Tiny pcap (libpcap, Ethernet link type) to hex-text converter for test vectors.
usage: pcap2hex.py IN.pcap OUT.hex COMMENT strip|keep
strip: drop the 14-byte Ethernet header (gives the IP packet); keep: whole frame.
Output: '#' comment lines, then one packet per line as lowercase hex."""
import struct
import sys

src, dst, comment, mode = sys.argv[1:5]
data = open(src, "rb").read()
magic = data[:4]
if magic == b"\xd4\xc3\xb2\xa1":
    e = "<"
elif magic == b"\xa1\xb2\xc3\xd4":
    e = ">"
else:
    sys.exit("not a microsecond libpcap file")
linktype = struct.unpack(e + "I", data[20:24])[0]
if linktype != 1:
    sys.exit("link type %d is not Ethernet" % linktype)
off = 24
pkts = []
while off + 16 <= len(data):
    _, _, incl, orig = struct.unpack(e + "IIII", data[off:off + 16])
    off += 16
    frame = data[off:off + incl]
    off += incl
    if incl != orig:
        sys.exit("truncated capture")
    pkts.append(frame[14:] if mode == "strip" else frame)
if not pkts:
    sys.exit("no packets in " + src)
with open(dst, "w") as f:
    f.write("# " + comment + "\n")
    for p in pkts:
        f.write(p.hex() + "\n")
print("%s: %d packets" % (dst, len(pkts)))
